//! Prometheus text exposition (docs/metrics.md); `ops::http` serves it.
use std::fmt::Write as _;

use filter_common::{Counter, OutReason, Reason};
use filter_kernel::maps::monotonic_ns;
use ipnet::IpNet;

use super::{counters, media_metrics, process::ProcessStats, snapshot::Snapshot};

/// The exposition of every snapshot. Counters and allowlist sizes are
/// those read; a snapshot whose maps could not be read (pins removed or
/// damaged) has none of those series, only `sipwall_attached`: an absent
/// series is honest where a zero would look like a counter reset.
pub fn render(samples: &[Snapshot]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        rows(&mut out);
    };
    // Every counter of both programs, once as packets and once as bytes.
    let per_reason = |metric: &str, pick: fn(Counter) -> u64, o: &mut String| {
        for s in samples {
            let Some(counters) = &s.counters else {
                continue;
            };
            counters::series::<Reason>(o, metric, &s.iface, "in", counters, pick);
            // The TC egress program's decisions (strict egress).
            let Some(out) = &s.out_counters else { continue };
            counters::series::<OutReason>(o, metric, &s.iface, "out", out, pick);
        }
    };
    family(
        "sipwall_packets_total",
        "Packets judged by the XDP filter (direction=\"in\") and the TC egress program (direction=\"out\"), by reason.",
        "counter",
        &mut |o| per_reason("sipwall_packets_total", |c| c.packets, o),
    );
    family(
        "sipwall_bytes_total",
        "Bytes (frame length) judged by the XDP filter (direction=\"in\") and the TC egress program (direction=\"out\"), by reason.",
        "counter",
        &mut |o| per_reason("sipwall_bytes_total", |c| c.bytes, o),
    );
    family(
        "sipwall_allowlist_entries",
        "Prefixes in the signalling allowlist.",
        "gauge",
        &mut |o| {
            for s in samples {
                let Some(ruleset) = &s.ruleset else { continue };
                let _ = writeln!(
                    o,
                    "sipwall_allowlist_entries{{iface=\"{}\",family=\"ipv4\"}} {}",
                    s.iface,
                    ruleset.v4().count()
                );
                let _ = writeln!(
                    o,
                    "sipwall_allowlist_entries{{iface=\"{}\",family=\"ipv6\"}} {}",
                    s.iface,
                    ruleset.v6().count()
                );
            }
        },
    );
    family(
        "sipwall_ban_entries",
        "Bans in force (expired entries not counted).",
        "gauge",
        &mut |o| {
            let now = monotonic_ns();
            for s in samples {
                let Some(bans) = &s.bans else { continue };
                let in_force = |v4: bool| {
                    bans.iter()
                        .filter(|b| b.expires_ns > now && matches!(b.net, IpNet::V4(_)) == v4)
                        .count()
                };
                for (family, v4) in [("ipv4", true), ("ipv6", false)] {
                    let _ = writeln!(
                        o,
                        "sipwall_ban_entries{{iface=\"{}\",family=\"{family}\"}} {}",
                        s.iface,
                        in_force(v4)
                    );
                }
            }
        },
    );
    family(
        "sipwall_policy_info",
        "The policy the kernel enforces now, as labels (value always 1).",
        "gauge",
        &mut |o| {
            for s in samples {
                let Some(ruleset) = &s.ruleset else { continue };
                let _ = writeln!(
                    o,
                    "sipwall_policy_info{{iface=\"{}\",mode=\"{}\",dry_run=\"{}\",egress=\"{}\",media=\"{}\",media_mode=\"{}\"}} 1",
                    s.iface,
                    ruleset.mode.name(),
                    ruleset.dry_run,
                    ruleset.egress.mode.name(),
                    if ruleset.check_rtp { "rtp" } else { "any" },
                    ruleset.media.mode.name()
                );
            }
        },
    );
    // Calls mode, from the maps: present whenever they were read, so the
    // alerts see a series from the start.
    family(
        "sipwall_pinholes_active",
        "Pinholes the kernel passes media through now (calls mode; 0 in range mode).",
        "gauge",
        &mut |o| {
            for s in samples {
                let Some(m) = &s.media else { continue };
                let _ = writeln!(
                    o,
                    "sipwall_pinholes_active{{iface=\"{}\"}} {}",
                    s.iface, m.pinholes_active
                );
            }
        },
    );
    family(
        "sipwall_signalling_copies_lost_total",
        "Copies of signalling packets for the call reader that the ring had no room for.",
        "counter",
        &mut |o| {
            for s in samples {
                let Some(m) = &s.media else { continue };
                let _ = writeln!(
                    o,
                    "sipwall_signalling_copies_lost_total{{iface=\"{}\"}} {}",
                    s.iface, m.stats.lost
                );
            }
        },
    );
    family(
        "sipwall_media_reader_up",
        "Calls mode: 1 while the call reader's heartbeat is less than 5 s old, else 0 (media then follows [media] unattended).",
        "gauge",
        &mut |o| {
            for s in samples {
                let Some(m) = s.media.filter(|m| m.calls) else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "sipwall_media_reader_up{{iface=\"{}\"}} {}",
                    s.iface,
                    u8::from(m.reader_up())
                );
            }
        },
    );
    // From the call reader of this process, for the interfaces it follows.
    family(
        "sipwall_calls_active",
        "Calls the call reader of this process follows now.",
        "gauge",
        &mut |o| {
            for s in samples {
                let Some(m) = media_metrics::get(&s.iface) else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "sipwall_calls_active{{iface=\"{}\"}} {}",
                    s.iface,
                    m.calls_active()
                );
            }
        },
    );
    family(
        "sipwall_pinhole_install_seconds",
        "Time from the kernel's timestamp of a signalling packet with SDP to the pinhole it asked for written.",
        "histogram",
        &mut |o| {
            for s in samples {
                let Some(m) = media_metrics::get(&s.iface) else {
                    continue;
                };
                m.render_install(o, "sipwall_pinhole_install_seconds", &format!("iface=\"{}\"", s.iface));
            }
        },
    );
    family(
        "sipwall_attached",
        "1 when the filter runs on the interface.",
        "gauge",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "sipwall_attached{{iface=\"{}\",mode=\"{}\"}} {}",
                    s.iface,
                    s.mode,
                    u8::from(s.attached)
                );
            }
        },
    );
    out
}

/// How the `run` service's configuration reloads went (SIGHUP or a change
/// of the file), for the `sipwall_config_*` metrics.
#[derive(Clone, Copy, Debug)]
pub struct ReloadState {
    /// The last load of the file (the first one at start included) was
    /// applied.
    pub last_successful: bool,
    /// When a load of the file was last applied (Unix time, seconds).
    pub last_success: f64,
    /// Reloads applied and refused since the service started (the load at
    /// start is not counted).
    pub successes: u64,
    pub failures: u64,
}

impl ReloadState {
    /// The state right after the file was loaded at start.
    pub fn started(now: f64) -> ReloadState {
        ReloadState {
            last_successful: true,
            last_success: now,
            successes: 0,
            failures: 0,
        }
    }

    pub fn record(&mut self, applied: bool, now: f64) {
        self.last_successful = applied;
        if applied {
            self.last_success = now;
            self.successes += 1;
        } else {
            self.failures += 1;
        }
    }
}

/// The `sipwall_config_*` families (named as Prometheus names its own).
pub fn render_reloads(state: &ReloadState) -> String {
    format!(
        "# HELP sipwall_config_last_reload_successful 1 when the last load of the configuration file was applied, 0 when it was refused (the previous policy still runs).
# TYPE sipwall_config_last_reload_successful gauge
sipwall_config_last_reload_successful {}
# HELP sipwall_config_last_reload_success_timestamp_seconds When a load of the configuration file was last applied.
# TYPE sipwall_config_last_reload_success_timestamp_seconds gauge
sipwall_config_last_reload_success_timestamp_seconds {:.3}
# HELP sipwall_config_reloads_total Reloads of the configuration file (SIGHUP or a change of the file), by result.
# TYPE sipwall_config_reloads_total counter
sipwall_config_reloads_total{{result=\"success\"}} {}
sipwall_config_reloads_total{{result=\"failure\"}} {}
",
        u8::from(state.last_successful),
        state.last_success,
        state.successes,
        state.failures
    )
}

/// `sipwall_build_info` and the standard `process_*` families (those
/// client libraries export by default). A /proc that cannot be read leaves
/// the `process_*` families out rather than failing the scrape.
pub fn render_process() -> String {
    let mut out = format!(
        "# HELP sipwall_build_info The running binary's version and source revision (value always 1).
# TYPE sipwall_build_info gauge
sipwall_build_info{{version=\"{}\",revision=\"{}\"}} 1
",
        env!("CARGO_PKG_VERSION"),
        env!("SIPWALL_REVISION")
    );
    if let Ok(p) = ProcessStats::read() {
        let _ = write!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds {:.2}
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {}
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds {}
",
            p.start_time, p.resident_bytes, p.open_fds
        );
    }
    out
}
