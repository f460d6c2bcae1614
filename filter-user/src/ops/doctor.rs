//! `sipwall doctor`: the checks of what goes wrong on a production SIP
//! edge, each ok, warn or fail with what to do (docs/doctor.md). Nothing
//! here changes anything: the doctor reads pins, maps, the kernel and the
//! configuration file, and resolves the provider's name.
use std::{
    net::{IpAddr, ToSocketAddrs as _},
    path::{Path, PathBuf},
    time::Duration,
};

use filter_kernel::{
    attachment::Attachment,
    flows::FlowTuple,
    pins::{is_bpffs, PinRoot, EGRESS_LINK_PIN, INFO_PIN, LINK_PIN},
    program,
};
use filter_policy::{
    config,
    ruleset::{Ruleset, Unattended, PROVIDER_SIGNALLING},
};

use super::{
    ephemeral::{self, Ephemeral},
    json,
    snapshot::{MediaSnapshot, Snapshot},
};
use filter_common::{maps as map_names, Reason};
use ipnet::IpNet;

/// The provider's signalling hostname (docs/policy.md).
pub const DEFAULT_PROVIDER_HOST: &str = "sip.vapi.ai";
/// How long the provider's name may take to resolve before the DNS check
/// is skipped.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Could not be checked here (says why); counts as ok for the exit status.
    Skip,
    Warn,
    Fail,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Skip => "skip",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }

    /// The exit status of a run whose worst result is this: 0 ok (or
    /// skipped), 1 warn, 2 fail.
    pub fn exit_status(self) -> u8 {
        match self {
            Level::Ok | Level::Skip => 0,
            Level::Warn => 1,
            Level::Fail => 2,
        }
    }
}

pub struct Check {
    pub name: &'static str,
    pub level: Level,
    /// What was found.
    pub summary: String,
    /// What to do, when something should be done.
    pub action: Option<String>,
}

impl Check {
    fn new(name: &'static str, level: Level, summary: impl Into<String>) -> Check {
        Check {
            name,
            level,
            summary: summary.into(),
            action: None,
        }
    }

    fn action(mut self, action: impl Into<String>) -> Check {
        self.action = Some(action.into());
        self
    }
}

pub struct Options {
    pub root: PathBuf,
    pub iface: Option<String>,
    pub config: Option<PathBuf>,
    pub provider_host: String,
}

/// Everything the checks look at about the interface, read once.
struct Scene {
    iface: Option<String>,
    /// Why there is no interface to look at.
    no_iface: Option<String>,
    snapshot: Option<Snapshot>,
    denied: Vec<(IpAddr, u64)>,
}

pub fn run(opts: &Options) -> Vec<Check> {
    let root = PinRoot::new(&opts.root);
    let scene = Scene::gather(&root, opts.iface.as_deref());
    let mut checks = vec![
        kernel_btf(Path::new("/sys/kernel/btf/vmlinux")),
        kernel_xdp_link(&kernel_release()),
        bpffs(&root),
        pins(&root, &scene),
        attachment(&scene),
    ];
    let ruleset = scene.snapshot.as_ref().and_then(|s| s.ruleset.clone());
    checks.push(provider_allowlist(&scene, ruleset.as_ref()));
    checks.push(provider_dns(&opts.provider_host, &scene, ruleset.as_ref()));
    checks.push(config_in_sync(
        opts.config.as_deref(),
        ruleset.as_ref(),
        &scene,
    ));
    checks.push(near_provider(&scene, ruleset.as_ref()));
    let eph = Ephemeral::of_this_netns();
    checks.push(egress_dns(
        ruleset.as_ref(),
        eph.as_ref(),
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        &std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default(),
    ));
    checks.push(rtp_ephemeral(ruleset.as_ref(), eph.as_ref()));
    checks.push(media_reader(
        scene.iface_or(),
        ruleset.as_ref(),
        scene.snapshot.as_ref().and_then(|s| s.media.as_ref()),
    ));
    checks.push(calls_tls(
        ruleset.as_ref(),
        &filter_kernel::flows::open_flows().unwrap_or_default(),
    ));
    checks.push(l3_iface(&scene));
    checks.push(tunnels(
        &filter_kernel::iface::all_links().unwrap_or_default(),
        &root.attached().unwrap_or_default(),
    ));
    checks.push(clock(&root, &scene));
    checks.push(rlimits(&kernel_release()));
    checks
}

impl Scene {
    fn gather(root: &PinRoot, iface: Option<&str>) -> Scene {
        let mut scene = Scene {
            iface: None,
            no_iface: None,
            snapshot: None,
            denied: Vec::new(),
        };
        let iface = match iface {
            Some(i) => i.to_string(),
            None => match root.attached() {
                Ok(list) if list.len() == 1 => list[0].clone(),
                Ok(list) if list.is_empty() => {
                    scene.no_iface = Some(format!(
                        "sipwall is not attached to any interface (no pins under {})",
                        root.path().display()
                    ));
                    return scene;
                }
                Ok(list) => {
                    scene.no_iface = Some(format!(
                        "sipwall is attached to several interfaces ({}): name one with -i",
                        list.join(", ")
                    ));
                    return scene;
                }
                Err(e) => {
                    scene.no_iface = Some(format!("{e:#}"));
                    return scene;
                }
            },
        };
        scene.snapshot = Some(Snapshot::gather(root, &iface));
        if let Ok(att) = Attachment::open_resolved(root, iface.clone()) {
            if let Ok(sources) = att.maps.denied_sources() {
                scene.denied = sources.into_iter().map(|(a, c)| (a, c.packets)).collect();
            }
        }
        scene.iface = Some(iface);
        scene
    }

    fn iface_or(&self) -> &str {
        self.iface.as_deref().unwrap_or("IFACE")
    }
}

fn kernel_btf(path: &Path) -> Check {
    if path.exists() {
        Check::new(
            "kernel_btf",
            Level::Ok,
            format!("kernel BTF at {}", path.display()),
        )
    } else {
        Check::new(
            "kernel_btf",
            Level::Warn,
            format!("no kernel BTF at {}: sipwall's program loads without it, but bpftool cannot show its maps' types and BTF-based tools fail", path.display()),
        )
        .action("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's is)")
    }
}

/// The running kernel's release as this process sees it (uname(2), as
/// `uname -r` shows it; a personality such as UNAME26 changes it).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data, valid when zeroed.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for the call's duration.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname fills `release` with a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `(major, minor)` of a kernel release such as "6.18.44-fc-v857".
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn kernel_xdp_link(release: &str) -> Check {
    match kernel_version(release) {
        Some(v) if v >= (5, 9) => Check::new(
            "kernel_xdp_link",
            Level::Ok,
            format!("Linux {release} has XDP bpf_links (5.9 or later), which keep the pinned filter on the interface"),
        ),
        Some(_) => Check::new(
            "kernel_xdp_link",
            Level::Fail,
            format!("Linux {release} predates XDP bpf_links (5.9): sipwall cannot pin its attachment"),
        )
        .action("upgrade the kernel to 5.9 or later"),
        None => Check::new(
            "kernel_xdp_link",
            Level::Warn,
            format!("cannot tell the kernel version from {release:?}"),
        ),
    }
}

fn bpffs(root: &PinRoot) -> Check {
    let path = root.path();
    // The root itself, or the folder it would be created in.
    let on_bpffs = is_bpffs(path) || (!path.exists() && path.parent().is_some_and(is_bpffs));
    if on_bpffs {
        Check::new(
            "bpffs",
            Level::Ok,
            format!("{} is on bpffs", path.display()),
        )
    } else {
        let mount = if path.starts_with("/sys/fs/bpf") {
            "/sys/fs/bpf".to_string()
        } else {
            path.display().to_string()
        };
        Check::new(
            "bpffs",
            Level::Fail,
            format!("{} is not on bpffs: pins cannot outlive sipwall there", path.display()),
        )
        .action(format!(
            "mount -t bpf bpf {mount} (systemd's sys-fs-bpf.mount does it at boot; in Kubernetes, mount the host's /sys/fs/bpf)"
        ))
    }
}

fn pins(root: &PinRoot, scene: &Scene) -> Check {
    let Some(iface) = &scene.iface else {
        return Check::new(
            "pins",
            Level::Fail,
            scene.no_iface.clone().unwrap_or_default(),
        )
        .action("sipwall attach -i IFACE -c /etc/sipwall/sipwall.toml");
    };
    let dir = root.iface_dir(iface);
    let mut problems = Vec::new();
    let expected = program::object_map_names().unwrap_or_default();
    let present: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for name in &expected {
        if !present.contains(name) {
            problems.push(format!("map {name} is not pinned"));
        }
    }
    for name in [INFO_PIN, LINK_PIN] {
        if !present.iter().any(|p| p == name) {
            problems.push(format!("{name} is missing"));
        }
    }
    let running = scene.snapshot.as_ref().and_then(|s| s.ruleset.as_ref());
    let strict = running.is_some_and(|r| r.strict());
    let egress_strict = running.is_some_and(|r| r.egress.strict());
    if egress_strict && !present.iter().any(|p| p == EGRESS_LINK_PIN) {
        problems.push(format!(
            "{EGRESS_LINK_PIN} is missing: strict egress filters nothing the host sends"
        ));
    } else if strict && !present.iter().any(|p| p == EGRESS_LINK_PIN) {
        problems.push(format!(
            "{EGRESS_LINK_PIN} is missing: strict mode learns no flows, so the host's own connections get no replies"
        ));
    }
    for name in &present {
        if !expected.contains(name)
            && name != INFO_PIN
            && name != LINK_PIN
            && name != EGRESS_LINK_PIN
        {
            problems.push(format!("{name} is not one of sipwall's pins"));
        }
    }
    if let Some(snap) = &scene.snapshot {
        if let Some(e) = &snap.unreadable {
            problems.push(format!("{e:#}"));
        }
    }
    if problems.is_empty() {
        Check::new(
            "pins",
            Level::Ok,
            format!(
                "{}: the link, INFO and all {} maps are pinned and readable",
                dir.display(),
                expected.len()
            ),
        )
    } else {
        Check::new(
            "pins",
            Level::Fail,
            format!("{}: {}", dir.display(), problems.join("; ")),
        )
        .action(format!(
            "sipwall attach -i {iface} recreates missing pins (keeping what it can); sipwall detach -i {iface} removes damaged ones"
        ))
    }
}

fn attachment(scene: &Scene) -> Check {
    let (Some(iface), Some(snap)) = (&scene.iface, &scene.snapshot) else {
        return Check::new(
            "xdp_attached",
            Level::Fail,
            scene.no_iface.clone().unwrap_or_default(),
        )
        .action("sipwall attach -i IFACE");
    };
    if !snap.attached {
        return Check::new(
            "xdp_attached",
            Level::Fail,
            format!(
                "sipwall is NOT filtering {iface}: {}",
                snap.problems.join("; ")
            ),
        )
        .action(format!(
            "sipwall attach -i {iface} -c /etc/sipwall/sipwall.toml"
        ));
    }
    match snap.mode {
        "native" | "hw" => Check::new(
            "xdp_attached",
            Level::Ok,
            format!("filtering {iface} in {} mode", snap.mode),
        ),
        // tun, WireGuard, PPP and the IP tunnels build an skb for every
        // packet themselves and offer no native XDP: generic mode costs
        // them nothing more.
        mode if snap.link == Some(filter_kernel::iface::LinkHeader::Ip) => Check::new(
            "xdp_attached",
            Level::Ok,
            format!(
                "filtering {iface} in {mode} (generic) mode, the one an L3 device offers: its packets are skbs already"
            ),
        ),
        mode => {
            let driver = std::fs::read_link(format!("/sys/class/net/{iface}/device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            let why = match driver {
                Some(d) => format!(
                    "the driver ({d}) refused native XDP when it was attached, or --mode skb was asked"
                ),
                None => "a virtual interface without native XDP, or --mode skb was asked".into(),
            };
            Check::new(
                "xdp_attached",
                Level::Warn,
                format!(
                    "filtering {iface} in {mode} (generic) mode: every packet gets an skb before sipwall sees it, several times the cost of native mode; {why}"
                ),
            )
            .action(format!(
                "sipwall detach -i {iface} && sipwall attach -i {iface} --mode native (the error names what the driver lacks); a driver update may add native XDP"
            ))
        }
    }
}

/// Strict egress lets DNS out only to `[egress] dns`: every resolver the
/// host uses (`resolv`, or, behind a local stub such as systemd-resolved,
/// its upstream list `upstream`) must be one of them. A query whose
/// ephemeral source port (`eph`) falls in `rtp_ports` leaves anyway, as
/// `out_reply`: then resolution fails only now and then.
pub fn egress_dns(
    ruleset: Option<&Ruleset>,
    eph: Option<&Ephemeral>,
    resolv: &str,
    upstream: &str,
) -> Check {
    let Some(r) = ruleset.filter(|r| r.egress.strict()) else {
        return Check::new(
            "egress_dns",
            Level::Skip,
            "egress is open (or the running policy could not be read): DNS is not filtered",
        );
    };
    let servers = |text: &str| -> Vec<IpAddr> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().split('%').next()?.parse().ok())
            .collect()
    };
    let mut used = servers(resolv);
    if used.iter().all(|a| a.is_loopback()) {
        used = servers(upstream);
    }
    used.retain(|a| !a.is_loopback());
    let missing: Vec<String> = used
        .iter()
        .filter(|a| !covers(&r.egress.dns, **a))
        .map(IpAddr::to_string)
        .collect();
    if used.is_empty() {
        return Check::new(
            "egress_dns",
            Level::Skip,
            "no resolver found in /etc/resolv.conf (or systemd-resolved's upstream list) to compare [egress] dns with",
        );
    }
    if missing.is_empty() {
        return Check::new(
            "egress_dns",
            Level::Ok,
            format!(
                "strict egress lets DNS out to every resolver the host uses ({} of them)",
                used.len()
            ),
        );
    }
    let how = match eph.map(|e| (e.exposed(r.rtp), e)) {
        Some((exposed, e)) if exposed > 0 => {
            let all = usize::from(e.high.saturating_sub(e.low)) + 1;
            format!(
                "name resolution fails whenever a query's source port lies outside rtp_ports {}-{}, and works by accident when it lies inside ({exposed} of the {all} ephemeral ports: their UDP leaves as out_reply; see rtp_ephemeral)",
                r.rtp.0, r.rtp.1
            )
        }
        _ => "name resolution fails".to_string(),
    };
    Check::new(
        "egress_dns",
        Level::Warn,
        format!(
            "strict egress drops DNS to {} (the host's resolvers, not in [egress] dns): {how}",
            missing.join(", ")
        ),
    )
    .action(format!(
        "add them to [egress] dns: dns = [{}]",
        used.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Whether `rtp_ports` holds ephemeral ports of this host (`eph`: the
/// namespace's `ip_local_port_range` minus `ip_local_reserved_ports`), in
/// every mode: a warning when `check_rtp`, a media rate limit or strict
/// egress makes that go wrong ([`ephemeral::consequences`]), ok (saying
/// so) while none of them is on.
pub fn rtp_ephemeral(ruleset: Option<&Ruleset>, eph: Option<&Ephemeral>) -> Check {
    const NAME: &str = "rtp_ephemeral";
    let Some(r) = ruleset else {
        return Check::new(NAME, Level::Skip, "the running policy could not be read");
    };
    let Some(eph) = eph else {
        return Check::new(
            NAME,
            Level::Skip,
            "net.ipv4.ip_local_port_range could not be read",
        );
    };
    let (first, last) = r.rtp;
    let (low, high) = (eph.low, eph.high);
    let exposed = eph.exposed(r.rtp);
    if exposed == 0 {
        return Check::new(
            NAME,
            Level::Ok,
            format!(
                "rtp_ports {first}-{last} holds none of the host's ephemeral UDP ports ({low}-{high}, reserved ones aside)"
            ),
        );
    }
    let what = ephemeral::consequences(r);
    if what.is_empty() {
        return Check::new(
            NAME,
            Level::Ok,
            format!(
                "rtp_ports {first}-{last} holds {exposed} of the host's ephemeral UDP ports ({low}-{high}); harmless while check_rtp, the media rate limit and strict egress are off: reserve them before turning one on ({})",
                ephemeral::remedy(r.rtp, eph)
            ),
        );
    }
    Check::new(
        NAME,
        Level::Warn,
        format!(
            "{exposed} ports of rtp_ports {first}-{last} are ephemeral ports of this host ({low}-{high}): {}",
            what.join("; ")
        ),
    )
    .action(ephemeral::remedy(r.rtp, eph))
}

/// The port TLS signalling uses (SIP over TLS, RFC 3261).
const SIP_TLS_PORT: u16 = 5061;

/// Calls mode reads the calls' SDP in their signalling; TLS hides it. A
/// warning when the host has TLS signalling connections open while in
/// calls mode: those calls get no pinholes.
pub fn calls_tls(ruleset: Option<&Ruleset>, flows: &[FlowTuple]) -> Check {
    const NAME: &str = "calls_tls";
    let Some(r) = ruleset else {
        return Check::new(NAME, Level::Skip, "the running policy could not be read");
    };
    if !r.media.calls() {
        return Check::new(
            NAME,
            Level::Ok,
            "range mode: media passes by its ports, whatever carries the signalling",
        );
    }
    let tls: Vec<&FlowTuple> = flows
        .iter()
        .filter(|f| f.proto == 6 && (f.local_port == SIP_TLS_PORT || f.remote_port == SIP_TLS_PORT))
        .collect();
    let Some(first) = tls.first() else {
        return Check::new(
            NAME,
            Level::Ok,
            format!("calls mode, and no TLS signalling connection (port {SIP_TLS_PORT}) is open: the call reader can read every call's SDP"),
        );
    };
    Check::new(
        NAME,
        Level::Warn,
        format!(
            "calls mode, but {} TLS signalling connection(s) on port {SIP_TLS_PORT} are open (e.g. {}:{} with {}:{}): their SDP is encrypted, so the call reader opens no pinholes for those calls and their media is dropped as rtp_unsolicited",
            tls.len(),
            first.local,
            first.local_port,
            first.remote,
            first.remote_port
        ),
    )
    .action("open those calls' pinholes from the PBX (`sipwall pinhole add`, e.g. on Asterisk ARI events), move the trunk to UDP or TCP, or set [media] mode = \"range\"")
}

fn covers(allow: &[IpNet], addr: IpAddr) -> bool {
    allow.iter().any(|n| n.contains(&addr))
}

fn provider_addresses() -> Vec<IpAddr> {
    PROVIDER_SIGNALLING
        .iter()
        .map(|c| c.parse::<IpNet>().expect("built-in CIDR").addr())
        .collect()
}

fn provider_allowlist(scene: &Scene, ruleset: Option<&Ruleset>) -> Check {
    let Some(ruleset) = ruleset else {
        return Check::new(
            "provider_allowlist",
            Level::Skip,
            "the running allowlist could not be read (see pins)",
        );
    };
    let iface = scene.iface_or();
    let missing: Vec<IpAddr> = provider_addresses()
        .into_iter()
        .filter(|a| !covers(&ruleset.allow, *a))
        .collect();
    if missing.is_empty() {
        Check::new(
            "provider_allowlist",
            Level::Ok,
            "both provider signalling addresses (44.229.228.186, 44.238.177.138) are allowed",
        )
    } else {
        let list: Vec<String> = missing.iter().map(|a| format!("{a}/32")).collect();
        Check::new(
            "provider_allowlist",
            Level::Fail,
            format!(
                "the allowlist lacks the provider's {}: calls signalled from it fail (intermittently: either address may carry any call)",
                list.join(" and ")
            ),
        )
        .action(format!(
            "sipwall allow add -i {iface} {}, and add it to [signalling] allow in the configuration file",
            list.join(" ")
        ))
    }
}

/// The addresses `host` resolves to through the system's resolver
/// (getaddrinfo: /etc/hosts, /etc/resolv.conf), or why not, within
/// `timeout`.
pub fn resolve(host: &str, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    // getaddrinfo cannot be cancelled: a thread that outlives the timeout
    // is left to finish on its own.
    std::thread::spawn(move || {
        let result = (name.as_str(), 5060)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(mut addrs)) => {
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

fn provider_dns(host: &str, scene: &Scene, ruleset: Option<&Ruleset>) -> Check {
    let Some(ruleset) = ruleset else {
        return Check::new(
            "provider_dns",
            Level::Skip,
            "the running allowlist could not be read (see pins)",
        );
    };
    let addrs = match resolve(host, DNS_TIMEOUT) {
        Ok(a) => a,
        Err(e) => {
            return Check::new(
                "provider_dns",
                Level::Skip,
                format!("{host} could not be resolved through the system's resolver ({e}): DNS unreachable from here? Skipped"),
            )
        }
    };
    let iface = scene.iface_or();
    let lacking: Vec<String> = addrs
        .iter()
        .filter(|a| !covers(&ruleset.allow, **a))
        .map(|a| match a {
            IpAddr::V4(_) => format!("{a}/32"),
            IpAddr::V6(_) => format!("{a}/128"),
        })
        .collect();
    let shown: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    if lacking.is_empty() {
        Check::new(
            "provider_dns",
            Level::Ok,
            format!("{host} resolves to {}, all allowed", shown.join(", ")),
        )
    } else {
        Check::new(
            "provider_dns",
            Level::Warn,
            format!(
                "{host} resolves to {}; the allowlist lacks {}. Not applied by itself: the provider publishes its addresses and warns against DNS-based rules",
                shown.join(", "),
                lacking.join(", ")
            ),
        )
        .action(format!(
            "confirm with the provider's published list, then: sipwall allow add -i {iface} {}",
            lacking.join(" ")
        ))
    }
}

/// What differs between two rulesets, for people.
pub fn differences(file: &Ruleset, running: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    let added: Vec<String> = file
        .allow
        .iter()
        .filter(|n| !running.allow.contains(n))
        .map(IpNet::to_string)
        .collect();
    let removed: Vec<String> = running
        .allow
        .iter()
        .filter(|n| !file.allow.contains(n))
        .map(IpNet::to_string)
        .collect();
    if !added.is_empty() {
        out.push(format!(
            "the file allows {} (not running)",
            added.join(", ")
        ));
    }
    if !removed.is_empty() {
        out.push(format!(
            "the running filter allows {} (not in the file)",
            removed.join(", ")
        ));
    }
    if file.sig_ports != running.sig_ports {
        out.push(format!(
            "signalling ports: file {:?}, running {:?}",
            file.sig_ports, running.sig_ports
        ));
    }
    if file.rtp != running.rtp {
        out.push(format!(
            "RTP range: file {}-{}, running {}-{}",
            file.rtp.0, file.rtp.1, running.rtp.0, running.rtp.1
        ));
    }
    if file.dry_run != running.dry_run {
        out.push(format!(
            "dry_run: file {}, running {}",
            file.dry_run, running.dry_run
        ));
    }
    if file.log_denied != running.log_denied {
        out.push(format!(
            "log_denied: file {}, running {}",
            file.log_denied, running.log_denied
        ));
    }
    out
}

fn config_in_sync(file: Option<&Path>, running: Option<&Ruleset>, scene: &Scene) -> Check {
    let Some(file) = file else {
        return Check::new(
            "config_in_sync",
            Level::Skip,
            "no configuration file given: -c FILE compares it with the running policy",
        );
    };
    let wanted = match config::load(Some(file)) {
        Ok(r) => r,
        Err(e) => {
            return Check::new(
                "config_in_sync",
                Level::Fail,
                format!("{} would be refused: {e:#}", file.display()),
            )
            .action("fix the file; `sipwall run` keeps the last good policy until then")
        }
    };
    let Some(running) = running else {
        return Check::new(
            "config_in_sync",
            Level::Skip,
            format!(
                "{} is valid; the running policy could not be read (see pins)",
                file.display()
            ),
        );
    };
    let diff = differences(&wanted, running);
    let iface = scene.iface_or();
    if diff.is_empty() {
        Check::new(
            "config_in_sync",
            Level::Ok,
            format!("the running policy is {}", file.display()),
        )
    } else {
        Check::new(
            "config_in_sync",
            Level::Warn,
            format!("the running policy is not {}: {}", file.display(), diff.join("; ")),
        )
        .action(format!(
            "under `sipwall run`: it reloads on a change of the file, or send SIGHUP (systemctl reload sipwall@{iface}); otherwise `sipwall allow replace` or attach again. A live `allow add` not yet in the file also shows here: add it to the file"
        ))
    }
}

/// Whether `a` is in the same /24 (IPv4) or /48 (IPv6) as `b`.
pub fn neighbours(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) >> 8) == (u32::from(b) >> 8),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) >> 80) == (u128::from(b) >> 80),
        _ => false,
    }
}

fn near_provider(scene: &Scene, ruleset: Option<&Ruleset>) -> Check {
    let Some(snap) = &scene.snapshot else {
        return Check::new("near_provider", Level::Skip, "nothing attached to look at");
    };
    let mut findings = Vec::new();
    let mut actions = Vec::new();
    // The provider's published addresses and every address the allowlist
    // names: a denied neighbour of one is most likely the provider sending
    // from an address the allowlist lacks.
    let mut known: Vec<IpAddr> = provider_addresses();
    if let Some(r) = ruleset {
        known.extend(r.allow.iter().map(IpNet::addr));
    }
    let iface = scene.iface_or();
    for (addr, packets) in &scene.denied {
        if let Some(near) = known.iter().find(|k| neighbours(*addr, **k)) {
            findings.push(format!(
                "{addr} sent {packets} denied signalling packets, next to the allowed {near}"
            ));
            let len = if addr.is_ipv4() { 32 } else { 128 };
            actions.push(format!("sipwall allow add -i {iface} {addr}/{len}"));
        }
    }
    let rtp_outside = snap
        .counters
        .map_or(0, |c| c[Reason::RtpOutside as usize].packets);
    if rtp_outside > 0 {
        findings.push(format!(
            "{rtp_outside} packets of provider media arrived outside [media] rtp_ports (rtp_outside): one-way audio"
        ));
        actions.push("set [media] rtp_ports to the PBX's RTP range".into());
    }
    if findings.is_empty() {
        Check::new(
            "near_provider",
            Level::Ok,
            "no denied signalling from next to the provider's or the allowlist's addresses, no provider media outside rtp_ports".to_string(),
        )
    } else {
        Check::new("near_provider", Level::Warn, findings.join("; ")).action(format!(
            "if the provider confirms the address: {}",
            actions.join("; ")
        ))
    }
}

/// The kernel's clock synchronisation state (adjtimex): `true` when it is
/// synchronised, `false` when not (TIME_ERROR), `None` when unknown.
fn clock_synchronised() -> Option<bool> {
    // SAFETY: timex is plain old data, valid when zeroed; modes 0 only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for the call's duration.
    let state = unsafe { libc::adjtimex(&mut tx) };
    match state {
        -1 => None,
        libc::TIME_ERROR => Some(false),
        _ => Some(true),
    }
}

/// The clock check's verdict from what was read: whether the clock is
/// synchronised, and how far the attachment's recorded first-attach time
/// lies in the future (a clock that went backwards).
pub fn clock_verdict(synchronised: Option<bool>, attached_in_future: Option<u64>) -> Check {
    let mut problems = Vec::new();
    if synchronised == Some(false) {
        problems.push("the system clock is not synchronised (the kernel reports TIME_ERROR): TLS on 5061 checks certificates against it, and the fleet's logs and metrics won't line up".to_string());
    }
    if let Some(ahead) = attached_in_future.filter(|s| *s > 60) {
        problems.push(format!(
            "the filter's recorded attach time is {ahead} s in the future: the clock went backwards since"
        ));
    }
    if problems.is_empty() {
        let how = match synchronised {
            Some(true) => "synchronised",
            _ => "state unknown",
        };
        Check::new("clock", Level::Ok, format!("system clock {how}"))
    } else {
        Check::new("clock", Level::Warn, problems.join("; "))
            .action("run an NTP client (chrony or systemd-timesyncd) and check `timedatectl`")
    }
}

fn clock(root: &PinRoot, scene: &Scene) -> Check {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ahead = scene.iface.as_ref().and_then(|iface| {
        filter_kernel::pins::read_info(&root.iface_dir(iface))
            .ok()
            .map(|info| info.attached_at.saturating_sub(now))
    });
    clock_verdict(clock_synchronised(), ahead)
}

/// File descriptors a sipwall command holds at most: one per map, the
/// program, the link, the lock, sockets and pipes.
pub fn fds_needed() -> u64 {
    map_names::ALL.len() as u64 + 16
}

/// The rlimit check's verdict from what was read: the kernel version, the
/// soft RLIMIT_MEMLOCK (bytes; `None` for unlimited) and RLIMIT_NOFILE.
pub fn rlimit_verdict(
    kernel: Option<(u32, u32)>,
    memlock: Option<u64>,
    nofile: Option<u64>,
) -> Check {
    let mut problems = Vec::new();
    let mut actions = Vec::new();
    // Before 5.11 BPF maps are charged to RLIMIT_MEMLOCK; since, to the
    // memory cgroup.
    let memlock_applies = kernel.is_some_and(|v| v < (5, 11));
    const MAPS_NEED: u64 = 64 << 20;
    if memlock_applies && memlock.is_some_and(|m| m < MAPS_NEED) {
        problems.push(format!(
            "RLIMIT_MEMLOCK is {} KiB and this kernel (before 5.11) charges BPF maps to it: loading fails with EPERM",
            memlock.unwrap_or(0) >> 10
        ));
        actions.push("LimitMEMLOCK=infinity in the unit (or `ulimit -l unlimited`)");
    }
    if nofile.is_some_and(|n| n < fds_needed()) {
        problems.push(format!(
            "RLIMIT_NOFILE is {}, below the {} file descriptors sipwall holds (one per map)",
            nofile.unwrap_or(0),
            fds_needed()
        ));
        actions.push("LimitNOFILE=1024 or more (or `ulimit -n 1024`)");
    }
    if problems.is_empty() {
        let memlock_note = if memlock_applies {
            "RLIMIT_MEMLOCK suffices"
        } else {
            "BPF memory is charged to the memory cgroup (5.11 or later), not RLIMIT_MEMLOCK"
        };
        Check::new(
            "rlimits",
            Level::Ok,
            format!("{memlock_note}; RLIMIT_NOFILE suffices"),
        )
    } else {
        Check::new("rlimits", Level::Warn, problems.join("; ")).action(actions.join("; "))
    }
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    // SAFETY: rlimit is plain old data, valid when zeroed.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for the call's duration.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

fn rlimits(release: &str) -> Check {
    rlimit_verdict(
        kernel_version(release),
        soft_limit(libc::RLIMIT_MEMLOCK),
        soft_limit(libc::RLIMIT_NOFILE),
    )
}

/// The worst level among the checks.
pub fn worst(checks: &[Check]) -> Level {
    checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok)
}

pub fn to_json(checks: &[Check]) -> json::Doctor {
    json::Doctor {
        checks: checks
            .iter()
            .map(|c| json::DoctorCheck {
                name: c.name.into(),
                status: c.level.name().into(),
                summary: c.summary.clone(),
                action: c.action.clone(),
            })
            .collect(),
        worst: worst(checks).name().into(),
    }
}

pub fn to_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Skip => "skip",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        out += &format!("{tag}  {:<18} {}\n", c.name, c.summary);
        if let Some(a) = &c.action {
            out += &format!("      {:<18} -> {a}\n", "");
        }
    }
    out += &format!("worst: {}\n", worst(checks).name());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_and_the_xdp_link_threshold() {
        assert_eq!(kernel_version("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(kernel_version("5.8.0-63-generic"), Some((5, 8)));
        assert_eq!(kernel_xdp_link("5.9.0").level, Level::Ok);
        assert_eq!(kernel_xdp_link("5.8.18").level, Level::Fail);
        assert_eq!(kernel_xdp_link("garbage").level, Level::Warn);
    }

    #[test]
    fn exit_status_follows_the_worst_level() {
        let c = |level| Check::new("x", level, "");
        assert_eq!(worst(&[c(Level::Ok), c(Level::Skip)]).exit_status(), 0);
        assert_eq!(
            worst(&[c(Level::Ok), c(Level::Warn), c(Level::Skip)]).exit_status(),
            1
        );
        assert_eq!(worst(&[c(Level::Fail), c(Level::Warn)]).exit_status(), 2);
    }

    #[test]
    fn calls_tls_warns_only_in_calls_mode_with_tls_connections() {
        use filter_policy::ruleset::{MediaCalls, MediaMode};
        let tls = FlowTuple {
            proto: 6,
            remote: "44.229.228.186".parse().unwrap(),
            remote_port: 5061,
            local: "192.0.2.10".parse().unwrap(),
            local_port: 40123,
        };
        let udp = FlowTuple {
            proto: 17,
            remote_port: 5060,
            local_port: 5060,
            ..tls
        };
        let range = Ruleset::default();
        let calls = Ruleset {
            media: MediaCalls {
                mode: MediaMode::Calls,
                ..MediaCalls::default()
            },
            ..Ruleset::default()
        };
        assert_eq!(calls_tls(None, &[tls]).level, Level::Skip);
        assert_eq!(calls_tls(Some(&range), &[tls]).level, Level::Ok);
        assert_eq!(calls_tls(Some(&calls), &[udp]).level, Level::Ok);
        let warned = calls_tls(Some(&calls), &[udp, tls]);
        assert_eq!(warned.level, Level::Warn);
        assert!(
            warned.summary.contains("1 TLS signalling connection"),
            "{}",
            warned.summary
        );
        assert!(warned
            .action
            .as_deref()
            .unwrap_or("")
            .contains("pinhole add"));
    }

    #[test]
    fn rtp_ports_against_the_ephemeral_range() {
        let base = Ruleset {
            check_rtp: true,
            ..Ruleset::default()
        };
        let level = |r: &Ruleset, range: &str, reserved: &str| {
            rtp_ephemeral(Some(r), Ephemeral::parse(range, reserved).as_ref()).level
        };
        // The defaults: 40000-60000 inside 32768-60999.
        assert_eq!(level(&base, "32768\t60999\n", "\n"), Level::Warn);
        assert_eq!(level(&base, "32768\t60999\n", "40000-60000\n"), Level::Ok);
        assert_eq!(
            level(&base, "32768\t60999\n", "40000-50000,50001-60000\n"),
            Level::Ok
        );
        assert_eq!(level(&base, "32768\t60999\n", "40000-59999\n"), Level::Warn);
        let asterisk = Ruleset {
            rtp: (10000, 20000),
            ..base.clone()
        };
        assert_eq!(level(&asterisk, "32768\t60999\n", ""), Level::Ok);
        // Strict egress alone is judged too; nothing on is ok, but said.
        let mut egress = Ruleset::default();
        egress.egress.mode = filter_policy::ruleset::EgressMode::Strict;
        assert_eq!(level(&egress, "32768\t60999\n", ""), Level::Warn);
        let off = rtp_ephemeral(
            Some(&Ruleset::default()),
            Ephemeral::parse("32768 60999", "").as_ref(),
        );
        assert_eq!(off.level, Level::Ok);
        assert!(off.summary.contains("20001"), "{}", off.summary);
        assert_eq!(level(&base, "garbage", ""), Level::Skip);
    }

    #[test]
    fn clock_states() {
        assert_eq!(clock_verdict(Some(true), Some(0)).level, Level::Ok);
        assert_eq!(clock_verdict(Some(false), None).level, Level::Warn);
        assert_eq!(clock_verdict(Some(true), Some(3600)).level, Level::Warn);
        assert_eq!(clock_verdict(None, Some(30)).level, Level::Ok);
    }

    #[test]
    fn rlimit_states() {
        // Memlock matters only before 5.11.
        assert_eq!(
            rlimit_verdict(Some((6, 1)), Some(64 << 10), Some(1024)).level,
            Level::Ok
        );
        let old = rlimit_verdict(Some((5, 4)), Some(64 << 10), Some(1024));
        assert_eq!(old.level, Level::Warn);
        assert!(old.action.unwrap().contains("LimitMEMLOCK"));
        assert_eq!(
            rlimit_verdict(Some((5, 4)), None, Some(1024)).level,
            Level::Ok
        );
        assert_eq!(
            rlimit_verdict(Some((6, 1)), None, Some(8)).level,
            Level::Warn
        );
    }

    #[test]
    fn neighbourhoods() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(neighbours(a("44.229.228.186"), a("44.229.228.7")));
        assert!(!neighbours(a("44.229.228.186"), a("44.229.229.186")));
        assert!(neighbours(a("2001:db8:1::1"), a("2001:db8:1:ff::1")));
        assert!(!neighbours(a("2001:db8:1::1"), a("2001:db8:2::1")));
        assert!(!neighbours(a("192.0.2.1"), a("::ffff:192.0.2.1")));
    }

    #[test]
    fn egress_dns_compares_the_hosts_resolvers() {
        let rules = |dns: &[&str]| {
            let mut r = Ruleset::default();
            r.egress.mode = filter_policy::ruleset::EgressMode::Strict;
            r.egress.dns = dns.iter().map(|d| d.parse().unwrap()).collect();
            r
        };
        let resolv = "search example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n";
        let open = Ruleset::default();
        assert_eq!(egress_dns(Some(&open), None, resolv, "").level, Level::Skip);
        let all = rules(&["192.0.2.53/32", "2001:db8::/64"]);
        assert_eq!(egress_dns(Some(&all), None, resolv, "").level, Level::Ok);
        let some = rules(&["192.0.2.53/32"]);
        let c = egress_dns(Some(&some), None, resolv, "");
        assert_eq!(c.level, Level::Warn);
        assert!(c.summary.contains("2001:db8::53"), "{}", c.summary);
        // Behind systemd-resolved's stub, its upstream list counts.
        let stub = "nameserver 127.0.0.53\n";
        let c = egress_dns(Some(&some), None, stub, "nameserver 192.0.2.54\n");
        assert!(
            c.level == Level::Warn && c.summary.contains("192.0.2.54"),
            "{}",
            c.summary
        );
        assert_eq!(egress_dns(Some(&some), None, stub, "").level, Level::Skip);
        // With rtp_ports among the ephemeral ports, some queries leave
        // anyway: resolution fails now and then, and the summary says so.
        let eph = Ephemeral::parse("32768 60999", "").unwrap();
        let c = egress_dns(Some(&some), Some(&eph), resolv, "");
        assert!(
            c.level == Level::Warn && c.summary.contains("20001 of the 28232"),
            "{}",
            c.summary
        );
        let reserved = Ephemeral::parse("32768 60999", "40000-60000").unwrap();
        let c = egress_dns(Some(&some), Some(&reserved), resolv, "");
        assert!(
            c.summary.ends_with("name resolution fails"),
            "{}",
            c.summary
        );
    }
}

/// `l3_iface`: an attachment on an interface without a link header (tun,
/// WireGuard, PPP, ...) is fine, and says so; one whose programs read its
/// frames with the wrong header fails.
fn l3_iface(scene: &Scene) -> Check {
    const NAME: &str = "l3_iface";
    let (Some(iface), Some(snap)) = (&scene.iface, &scene.snapshot) else {
        return Check::new(NAME, Level::Skip, "no attachment to look at");
    };
    let Ok(link) = filter_kernel::iface::link_of(iface) else {
        return Check::new(
            NAME,
            Level::Skip,
            format!("the link type of {iface} could not be read"),
        );
    };
    l3_verdict(iface, &link, snap.link)
}

/// `l3_iface`'s judgement of `link` on `iface`, whose programs read frames
/// as starting with `read` (`None`: not known).
pub fn l3_verdict(
    iface: &str,
    link: &filter_kernel::iface::Link,
    read: Option<filter_kernel::iface::LinkHeader>,
) -> Check {
    use filter_kernel::iface::LinkHeader;
    const NAME: &str = "l3_iface";
    match (link.header(), read) {
        (Ok(want), Some(got)) if want != got => Check::new(
            NAME,
            Level::Fail,
            format!(
                "the filter reads {iface}'s frames as starting with {}, but {iface} ({}) starts them with {}: its packets are misread",
                got.describe(),
                link.describe(),
                want.describe()
            ),
        )
        .action(format!("sipwall attach -i {iface}")),
        (Ok(LinkHeader::Ip), _) => Check::new(
            NAME,
            Level::Ok,
            format!(
                "{iface} is an L3 device ({}): the filter reads its frames from the IP header",
                link.describe()
            ),
        ),
        (Ok(LinkHeader::Ethernet), _) => Check::new(
            NAME,
            Level::Ok,
            format!("{iface} has an Ethernet header ({})", link.describe()),
        ),
        (Err(why), _) => Check::new(NAME, Level::Fail, format!("sipwall cannot filter {iface}: it is {why}"))
            .action(format!("sipwall detach -i {iface}")),
    }
}

/// Kinds of Ethernet-typed devices that are tunnels (their packets arrive
/// decapsulated, unseen by a filter on the physical interface).
const ETHERNET_TUNNEL_KINDS: [&str; 5] = ["vxlan", "geneve", "gretap", "ip6gretap", "bareudp"];

/// `tunnels`: a tunnel or L3 device that is up, has addresses and is not
/// filtered: SIP may arrive through it unseen. `links` is every interface
/// (name, link, up, has addresses); `filtered` the attached ones.
pub fn tunnels(
    links: &[(String, filter_kernel::iface::Link, bool, bool)],
    filtered: &[String],
) -> Check {
    const NAME: &str = "tunnels";
    let open: Vec<String> = links
        .iter()
        .filter(|(name, link, up, addressed)| {
            let tunnel = link.is_l3_or_tunnel()
                || link
                    .kind
                    .as_deref()
                    .is_some_and(|k| ETHERNET_TUNNEL_KINDS.contains(&k));
            tunnel && *up && *addressed && !filtered.contains(name)
        })
        .map(|(name, link, ..)| match link.header() {
            Ok(_) => format!("{name} ({}): `sipwall attach -i {name}`", link.describe()),
            Err(why) => format!("{name}: sipwall cannot filter it, it is {why}"),
        })
        .collect();
    if open.is_empty() {
        return Check::new(
            NAME,
            Level::Ok,
            "no tunnel or L3 device with addresses is left unfiltered",
        );
    }
    Check::new(
        NAME,
        Level::Warn,
        format!(
            "SIP may arrive unseen through {} (up, with addresses, not filtered): the kernel hands a tunnel's inner packets to its own device, not to the filtered interface",
            open.join("; ")
        ),
    )
    .action(
        "attach sipwall to each of them (the commands above), or take their addresses away if no SIP should arrive there",
    )
}

/// Calls mode's reader (docs/policy.md, "Media by call"): it runs, and
/// the copies of signalling reach it.
pub fn media_reader(
    iface: &str,
    ruleset: Option<&Ruleset>,
    media: Option<&MediaSnapshot>,
) -> Check {
    const NAME: &str = "media_reader";
    let (Some(r), Some(m)) = (ruleset, media) else {
        return Check::new(
            NAME,
            Level::Skip,
            "the attachment's media maps cannot be read",
        );
    };
    if !r.media.calls() {
        return Check::new(
            NAME,
            Level::Skip,
            "range mode: media passes by rtp_ports, no call reader is needed",
        );
    }
    if !m.reader_up() {
        let who = m
            .reader_pid()
            .map_or("none has run, or the last stopped".to_string(), |p| {
                format!("the last one was pid {p}")
            });
        let restart = format!(
            "run the reader: `sipwall run -i {iface} -c FILE` (the systemd unit sipwall@{iface}), or set [media] mode = \"range\""
        );
        return match r.media.unattended {
            Unattended::Closed => Check::new(
                NAME,
                Level::Fail,
                format!(
                    "calls mode without a call reader ({who}): unattended = \"closed\" passes only the pinholes still live, so new calls have no audio"
                ),
            ),
            Unattended::Range => Check::new(
                NAME,
                Level::Warn,
                format!(
                    "calls mode without a call reader ({who}): unattended = \"range\" passes media by range, open to any source, and no pinhole opens"
                ),
            ),
        }
        .action(restart);
    }
    let pid = m
        .reader_pid()
        .map_or(String::new(), |p| format!(" (pid {p})"));
    if m.stats.lost > 0 {
        return Check::new(
            NAME,
            Level::Warn,
            format!(
                "the call reader runs{pid}, but {} copies of signalling were lost since the attach (the ring was full): their calls may have had no audio",
                m.stats.lost
            ),
        )
        .action("give the service the CPU it needs; see docs/runbook.md, SipwallSignallingCopiesLost");
    }
    Check::new(
        NAME,
        Level::Ok,
        format!(
            "the call reader runs{pid}: {} live pinholes, no copy of signalling lost",
            m.pinholes_active
        ),
    )
}

#[cfg(test)]
mod media_tests {
    use super::*;
    use filter_common::media::{MediaState, MediaStats};

    fn media(up: bool, pid: u32, lost: u64) -> MediaSnapshot {
        MediaSnapshot {
            calls: true,
            reader: MediaState {
                heartbeat_ns: if up { 10_000_000_000 } else { 0 },
                reader_pid: pid,
                reserved: 0,
            },
            stats: MediaStats { copies: 10, lost },
            pinholes_active: 4,
            now_ns: 11_000_000_000,
        }
    }

    fn ruleset(toml: &str) -> Ruleset {
        config::parse(toml, "t.toml").unwrap()
    }

    #[test]
    fn the_reader_is_checked_in_calls_mode_only() {
        let range = Ruleset::default();
        let closed = ruleset("[media]\nmode = \"calls\"\nunattended = \"closed\"\n");
        let open = ruleset("[media]\nmode = \"calls\"\n");
        let up = media(true, 42, 0);
        assert_eq!(
            media_reader("eth0", Some(&range), Some(&up)).level,
            Level::Skip
        );
        assert_eq!(media_reader("eth0", None, None).level, Level::Skip);
        let ok = media_reader("eth0", Some(&open), Some(&up));
        assert_eq!(ok.level, Level::Ok);
        assert!(ok.summary.contains("pid 42"), "{}", ok.summary);
        let down = media(false, 42, 0);
        let fail = media_reader("eth0", Some(&closed), Some(&down));
        assert_eq!(fail.level, Level::Fail);
        assert!(fail.summary.contains("pid 42"), "{}", fail.summary);
        assert!(fail.action.unwrap().contains("sipwall run -i eth0"));
        assert_eq!(
            media_reader("eth0", Some(&open), Some(&down)).level,
            Level::Warn
        );
        let lost = media_reader("eth0", Some(&open), Some(&media(true, 42, 3)));
        assert_eq!(lost.level, Level::Warn);
        assert!(lost.summary.contains("3 copies"), "{}", lost.summary);
    }
}

#[cfg(test)]
mod tunnel_tests {
    use super::*;
    use filter_kernel::iface::{Link, LinkHeader};

    fn link(arphrd: u16, kind: Option<&str>) -> Link {
        Link {
            arphrd,
            kind: kind.map(str::to_string),
            tun_mode: None,
        }
    }

    #[test]
    fn an_unfiltered_tunnel_with_addresses_is_named_with_its_command() {
        let links = vec![
            ("eth0".to_string(), link(1, None), true, true),
            (
                "wg0".to_string(),
                link(65534, Some("wireguard")),
                true,
                true,
            ),
            ("tun9".to_string(), link(65534, Some("tun")), false, true),
            ("vxlan0".to_string(), link(1, Some("vxlan")), true, true),
            ("gre1".to_string(), link(778, Some("gre")), true, true),
            ("ppp0".to_string(), link(512, None), true, false),
        ];
        let c = tunnels(&links, &["eth0".to_string(), "vxlan0".to_string()]);
        assert_eq!(c.level, Level::Warn, "{}", c.summary);
        assert!(
            c.summary.contains("`sipwall attach -i wg0`"),
            "{}",
            c.summary
        );
        assert!(
            c.summary.contains("gre1: sipwall cannot filter it"),
            "{}",
            c.summary
        );
        for quiet in ["eth0", "tun9", "vxlan0", "ppp0"] {
            assert!(!c.summary.contains(quiet), "{quiet}: {}", c.summary);
        }
        let all: Vec<String> = links.iter().map(|l| l.0.clone()).collect();
        let filtered = tunnels(&links[..5], &all);
        assert_eq!(filtered.level, Level::Ok, "{}", filtered.summary);
    }

    #[test]
    fn an_attachment_on_an_l3_device_is_fine_unless_misread() {
        let wg = link(65534, Some("wireguard"));
        let ok = l3_verdict("wg0", &wg, Some(LinkHeader::Ip));
        assert_eq!(ok.level, Level::Ok);
        assert!(ok.summary.contains("L3 device"), "{}", ok.summary);
        let misread = l3_verdict("wg0", &wg, Some(LinkHeader::Ethernet));
        assert_eq!(misread.level, Level::Fail);
        assert_eq!(misread.action.as_deref(), Some("sipwall attach -i wg0"));
        let eth = l3_verdict("eth0", &link(1, None), Some(LinkHeader::Ethernet));
        assert_eq!(eth.level, Level::Ok);
    }
}
