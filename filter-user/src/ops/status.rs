//! `status`: what is attached where, told truthfully (see
//! [`Snapshot::gather`]), for people and for programs. Attachments of other
//! network namespaces are listed as such, never checked from here.
use filter_common::{OutReason, Reason};
use filter_kernel::pins::{Elsewhere, PinRoot};

use super::{
    json,
    snapshot::{MediaSnapshot, Snapshot},
};

/// What the counters say the operator should change, one line each.
pub fn hints(s: &Snapshot) -> Vec<String> {
    let (Some(r), Some(c)) = (&s.ruleset, &s.counters) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let outside = c[Reason::RtpOutside as usize].packets;
    if outside > 0 {
        out.push(format!(
            "rtp_outside: {outside} packets of provider media (UDP from ports {}-{}) went to ports outside rtp_ports {}-{} and were dropped: calls have one-way audio. Set [media] rtp_ports to the RTP port range your PBX advertises in its SDP (e.g. \"10000-20000\" for Asterisk, \"16384-32768\" for FreeSWITCH)",
            r.provider_rtp.0, r.provider_rtp.1, r.rtp.0, r.rtp.1
        ));
    }
    if let Some(m) = s.media.filter(|m| m.calls && !m.reader_up()) {
        out.push(format!(
            "calls mode without a call reader{}: no pinhole opens for new calls, and media follows [media] unattended ({}); `sipwall run` reads the calls (or `sipwall pinhole add` from a PBX integration)",
            m.reader_pid().map_or(String::new(), |p| format!(" (the last one, pid {p}, stopped)")),
            r.media.unattended.name()
        ));
    }
    if let Some(o) = &s.out_counters {
        let denied = o[OutReason::Denied as usize].packets;
        let sip_denied = o[OutReason::SipDenied as usize].packets;
        if r.egress.strict() && (denied > 0 || sip_denied > 0) {
            out.push(format!(
                "strict egress {} {denied} outgoing packets as out_denied and {sip_denied} as out_sip_denied: if the host needs what they were (updates, NTP, monitoring), add an [[egress.allow]] rule; `sipwall check --pcap FILE --direction out` on a capture of the host's traffic shows which",
                if r.dry_run { "counted (dry run: not dropped)" } else { "dropped" }
            ));
        }
        if r.egress.strict() && r.egress.dns.is_empty() {
            out.push(
                "strict egress without [egress] dns: the host cannot resolve names (DNS is out_denied); set [egress] dns to the resolvers of /etc/resolv.conf".into(),
            );
        }
    }
    out
}

pub fn to_json(
    all: &[Snapshot],
    elsewhere: &[Elsewhere],
    root: &PinRoot,
    legacy: &[String],
) -> json::Status {
    use filter_policy::ruleset::compile_rules;
    let interfaces = all
        .iter()
        .map(|s| {
            let r = s.ruleset.as_ref();
            json::StatusInterface {
                iface: s.iface.clone(),
                attached: s.attached,
                mode: s.mode.into(),
                program_id: s.program_id,
                link: s.link.map(|l| l.name().to_string()),
                dry_run: r.map(|r| r.dry_run),
                allowlist_entries: r.map(|r| r.allow.len()),
                signalling_ports: r.map(|r| r.sig_ports.clone()),
                rtp_ports: r.map(|r| format!("{}-{}", r.rtp.0, r.rtp.1)),
                provider_rtp_ports: r.map(|r| format!("{}-{}", r.provider_rtp.0, r.provider_rtp.1)),
                policy_mode: r.map(|r| r.mode.name().into()),
                strict_rules: r.map(|r| compile_rules(&r.rules).len()),
                egress_mode: r.map(|r| r.egress.mode.name().into()),
                egress_rules: r.map(|r| compile_rules(&r.egress.rules).len()),
                egress_dns: r.map(|r| r.egress.dns.iter().map(|n| n.to_string()).collect()),
                media_mode: r.map(|r| r.media.mode.name().into()),
                media_reader_up: s.media.filter(|m| m.calls).map(|m| m.reader_up()),
                media_reader_pid: s.media.filter(|m| m.calls).and_then(|m| m.reader_pid()),
                pinholes_active: s.media.map(|m| m.pinholes_active),
                signalling_copies_lost: s.media.map(|m| m.stats.lost),
                hints: hints(s),
                policy: r.map(|r| r.summary()),
                problems: s.problems.clone(),
                capture: capture_state(root, &s.iface).map(|c| json::StatusCapture {
                    pid: c.pid,
                    alive: c.alive,
                }),
            }
        })
        .collect();
    // Keys only when there is something to say: with nothing elsewhere the
    // document stays exactly what it always was.
    let other_netns = elsewhere
        .iter()
        .map(|e| json::OtherNetns {
            iface: e.iface.clone(),
            netns: e.netns.0,
            netns_name: e.netns.name(),
        })
        .collect();
    let legacy_pins = legacy
        .iter()
        .map(|iface| json::LegacyPins {
            iface: iface.clone(),
            dir: root.path().join(iface),
        })
        .collect();
    json::Status {
        interfaces,
        other_netns,
        legacy_pins,
    }
}

pub fn to_text(
    all: &[Snapshot],
    elsewhere: &[Elsewhere],
    root: &PinRoot,
    legacy: &[String],
) -> String {
    let mut out = String::new();
    if all.is_empty() {
        out += &format!(
            "sipwall is not attached to any interface in this network namespace, {}\n",
            root.netns().describe()
        );
    }
    for s in all {
        let state = if s.attached {
            "filtering"
        } else {
            "NOT FILTERING"
        };
        out += &format!("{}: {state}, {} mode", s.iface, s.mode);
        if let Some(id) = s.program_id {
            out += &format!(", program id {id}");
        }
        out.push('\n');
        if let Some(r) = &s.ruleset {
            out += &format!("  {}\n", r.summary());
        }
        if let Some(link) = s.link {
            out += &format!("  link: {}\n", link.describe());
        }
        if let Some(m) = &s.media {
            out += &format!("  {}\n", media_text(m));
        }
        for p in &s.problems {
            out += &format!("  problem: {p}\n");
        }
        for h in hints(s) {
            out += &format!("  hint: {h}\n");
        }
        if let Some(c) = capture_state(root, &s.iface) {
            out += &format!("  {}\n", c.text());
        }
    }
    for e in elsewhere {
        let reach = match e.netns.flag() {
            Some(flag) => format!("`sipwall --netns {flag} status` checks it"),
            None => "run `sipwall status` in that namespace (or `--netns /proc/PID/ns/net` of a process in it) to check it".into(),
        };
        out += &format!(
            "{}: in another network namespace, {}; not checked from here: {reach}\n",
            e.iface,
            e.netns.describe()
        );
    }
    for iface in legacy {
        out += &format!(
            "{iface}: pins of sipwall's previous layout in {} that do not belong to this namespace's {iface}; any sipwall command in the namespace whose {iface} runs them adopts them. If nothing runs them, `rm -r {}` removes them\n",
            root.path().join(iface).display(),
            root.path().join(iface).display()
        );
    }
    out
}

/// The `media:` line: the mode, and in calls mode the reader, the live
/// pinholes and the copies lost.
pub fn media_text(m: &MediaSnapshot) -> String {
    if !m.calls {
        return "media: range (open to any source on rtp_ports)".into();
    }
    let reader = match (m.reader_up(), m.reader_pid()) {
        (true, Some(pid)) => format!("reader up (pid {pid})"),
        (true, None) => "reader up".to_string(),
        (false, Some(pid)) => {
            format!("reader DOWN (last pid {pid}): media follows [media] unattended")
        }
        (false, None) => "reader DOWN (none running): media follows [media] unattended".into(),
    };
    format!(
        "media: calls, {reader}, {} live pinholes, {} signalling copies lost",
        m.pinholes_active, m.stats.lost
    )
}

/// A capture's sampling on an interface: by which process, and whether it
/// still runs.
pub struct CaptureState {
    pub pid: u32,
    pub alive: bool,
}

impl CaptureState {
    pub fn text(&self) -> String {
        if self.alive {
            format!(
                "capture running (pid {}): the programs sample packets for it",
                self.pid
            )
        } else {
            format!(
                "problem: sampling left on by a capture that is gone (pid {}): the next `sipwall capture` or `sipwall run` clears it",
                self.pid
            )
        }
    }
}

/// Whether a capture samples on `iface` (`None`: no, or pins of an older
/// layout without the capture's maps).
pub fn capture_state(root: &PinRoot, iface: &str) -> Option<CaptureState> {
    let maps = filter_kernel::capture::CaptureMaps::open(&root.iface_dir(iface)).ok()?;
    let f = maps.filter().ok()?;
    (f.on != 0).then(|| CaptureState {
        pid: f.reader_pid,
        alive: filter_kernel::capture::reader_alive(&f),
    })
}
