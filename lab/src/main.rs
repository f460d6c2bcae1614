//! `sipwall-demo` (`cargo xtask demo`): the filter at work on a throw-away
//! lab of network namespaces (see [`sipwall_lab`]). The provider calls the
//! PBX and gets through, an outsider's calls are dropped, the outsider's
//! RTP arrives; the counters are printed and checked against the traffic
//! sent, then everything is removed, also on Ctrl-C. It runs the `sipwall`
//! binary that sits beside it (one `cargo build` makes both).
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use filter_common::Reason;
use serde_json::Value;

use filter_kernel::privileges::require_root;
use sipwall_lab::{
    self as lab,
    sipp::{self, Transport, Uas},
    traffic::{self, Sink},
    Host, Lab, OUTSIDER, PBX, PBX_IFACE, PROVIDER,
};

/// Namespaces of the demo start with this.
const PREFIX: &str = "sipwall-demo";

const PROVIDER_CALLS: u32 = 3;
const OUTSIDER_CALLS: u32 = 2;
const RTP_PORT: u16 = 40000;
const RTP_PACKETS: u64 = 50;
/// 12 bytes of RTP header and 20 ms of G.711.
const RTP_PAYLOAD: usize = 172;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipwall-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `sipwall` binary of the same build.
fn sipwall_exe() -> Result<PathBuf> {
    let demo = std::env::current_exe().context("locating the sipwall-demo binary")?;
    let exe = demo.with_file_name("sipwall");
    if !exe.is_file() {
        bail!(
            "{} missing: build it with `cargo build -p filter-user` (`cargo xtask demo` does)",
            exe.display()
        );
    }
    Ok(exe)
}

fn run() -> Result<()> {
    require_root()?;
    sipp::find()?;
    let exe = sipwall_exe()?;
    lab::stop_on_signals();

    println!("sipwall demo: a throw-away lab of network namespaces; this host's own interfaces are not touched.");
    step("building the lab");
    let lab = Lab::new(PREFIX)?;
    let provider = format!("{}, {}", PROVIDER[0], PROVIDER[1]);
    println!(
        "  {:<9} {provider:<32} namespace {}",
        "provider",
        lab.ns(Host::Provider)
    );
    println!(
        "  {:<9} {:<32} namespace {}",
        "outsider",
        OUTSIDER.to_string(),
        lab.ns(Host::Outsider)
    );
    println!(
        "  {:<9} {:<32} namespace {} (sipwall on {PBX_IFACE})",
        "pbx",
        PBX.to_string(),
        lab.ns(Host::Pbx)
    );
    println!(
        "  all three meet at a router namespace; pins go to a private bpffs at {}",
        lab.bpffs().display()
    );

    let result = show(&lab, &exe).and_then(|()| show_calls(&lab, &exe));
    step("cleaning up: deleting the namespaces (with the veths and the XDP attachment) and the private bpffs");
    drop(lab);
    println!("  lab removed");
    match &result {
        Ok(()) => println!("\ndemo finished: signalling only from the provider; media from anyone in range mode, only for the calls that are up in calls mode; every packet counted."),
        Err(_) if lab::stop_requested() => println!("\ndemo interrupted"),
        Err(_) => {}
    }
    result
}

fn show(lab: &Lab, exe: &Path) -> Result<()> {
    step(&format!(
        "attaching sipwall to {PBX_IFACE} in native (driver) mode, default policy"
    ));
    print_indented(&sipwall(
        lab,
        exe,
        &["attach", "-i", PBX_IFACE, "--mode", "native"],
    )?);

    step(&format!(
        "starting the PBX: sipp answering calls on {PBX}:5060 (UDP)"
    ));
    let _uas = Uas::start(lab, Transport::Udp)?;

    step(&format!(
        "the provider places {PROVIDER_CALLS} calls from each signalling address"
    ));
    let mut provider_sent = 0;
    let mut provider_answered = 0;
    for addr in PROVIDER {
        let calls = sipp::call(
            lab,
            Host::Provider,
            IpAddr::V4(addr),
            Transport::Udp,
            PROVIDER_CALLS,
        )?;
        println!(
            "  {addr:<15} -> pbx: {}/{PROVIDER_CALLS} calls answered, {} SIP packets sent   {}",
            calls.successful,
            calls.messages_sent,
            if calls.all_succeeded() {
                "PASSED (sip_allowed)"
            } else {
                "FAILED"
            }
        );
        provider_sent += calls.messages_sent;
        provider_answered += calls.successful;
    }

    step(&format!(
        "an outsider places {OUTSIDER_CALLS} calls (each gives up after 2 s without answer)"
    ));
    let calls = sipp::call(
        lab,
        Host::Outsider,
        IpAddr::V4(OUTSIDER),
        Transport::Udp,
        OUTSIDER_CALLS,
    )?;
    println!(
        "  {OUTSIDER:<15} -> pbx: {}/{OUTSIDER_CALLS} calls answered, {} SIP packets sent   {}",
        calls.successful,
        calls.messages_sent,
        if calls.none_succeeded() {
            "DROPPED (sip_denied)"
        } else {
            "GOT THROUGH"
        }
    );
    let outsider_sent = calls.messages_sent;
    let outsider_answered = calls.successful;

    step(&format!(
        "the outsider sends {RTP_PACKETS} RTP packets to {PBX}:{RTP_PORT} (media is allowed from anywhere)"
    ));
    let sink = traffic::udp_socket(lab, Host::Pbx, SocketAddr::new(IpAddr::V4(PBX), RTP_PORT))?;
    let sender = traffic::udp_socket(
        lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 0),
    )?;
    let sink = Sink::start(sink)?;
    let to = SocketAddr::new(IpAddr::V4(PBX), RTP_PORT);
    traffic::send(&sender, to, RTP_PACKETS, RTP_PAYLOAD)?;
    let arrived = sink.wait_for(RTP_PACKETS, Duration::from_secs(3));
    println!(
        "  {OUTSIDER:<15} -> pbx: {arrived}/{RTP_PACKETS} RTP packets arrived   {}",
        if arrived == RTP_PACKETS {
            "PASSED (rtp_allowed)"
        } else {
            "LOST"
        }
    );
    lab::check_stop()?;

    step("the counters: sipwall stats");
    print_indented(&sipwall(lab, exe, &["stats", "-i", PBX_IFACE])?);
    step("the denied sources: sipwall top");
    print_indented(&sipwall(lab, exe, &["top", "-i", PBX_IFACE])?);

    let stats: Value =
        serde_json::from_str(&sipwall(lab, exe, &["stats", "-i", PBX_IFACE, "--json"])?)
            .context("reading `sipwall stats --json`")?;
    let packets = |r: Reason| {
        stats["interfaces"][0]["counters"][r.name()]["packets"]
            .as_u64()
            .unwrap_or(0)
    };
    step("checking the counters against the traffic sent");
    let checks = [
        (
            "provider calls answered",
            provider_answered,
            u64::from(2 * PROVIDER_CALLS),
        ),
        ("outsider calls answered", outsider_answered, 0),
        ("RTP packets arrived", arrived, RTP_PACKETS),
        (
            "sip_allowed packets = provider SIP packets sent",
            packets(Reason::SipAllowed),
            provider_sent,
        ),
        (
            "sip_denied packets = outsider SIP packets sent",
            packets(Reason::SipDenied),
            outsider_sent,
        ),
        (
            "rtp_allowed packets = RTP packets sent",
            packets(Reason::RtpAllowed),
            RTP_PACKETS,
        ),
    ];
    let wrong = print_checks(&checks);

    step("detaching: sipwall detach");
    print_indented(&sipwall(lab, exe, &["detach", "-i", PBX_IFACE])?);
    if !wrong.is_empty() {
        bail!(
            "demo: the filter did not behave as expected: {}",
            wrong.join("; ")
        );
    }
    Ok(())
}

/// The PBX's media port in calls mode (its SDP names it), and the
/// provider's (sipp binds it and the port two above).
const CALLS_PBX_MEDIA: u16 = 40000;
const CALLS_PROVIDER_MEDIA: u16 = 40010;
/// The port the demo's own media senders use.
const SENDER_PORT: u16 = 45000;

/// The same lab in calls mode: `sipwall run` follows a provider's call and
/// opens its pinholes; the provider's media to the call's port arrives,
/// the outsider's is dropped as `rtp_unsolicited`.
fn show_calls(lab: &Lab, exe: &Path) -> Result<()> {
    step("calls mode: `sipwall run` with [media] mode = \"calls\": media only for the calls that are up");
    let config = lab.dir().join("calls.toml");
    std::fs::write(&config, "[media]\nmode = \"calls\"\n")
        .with_context(|| format!("writing {}", config.display()))?;
    println!("  {}: [media] mode = \"calls\"", config.display());
    let log = lab.dir().join("run.stderr");
    let mut run = KillOnDrop(
        lab.sipwall(
            exe,
            &[
                "run",
                "-i",
                PBX_IFACE,
                "--mode",
                "native",
                "-c",
                &config.to_string_lossy(),
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting sipwall run")?,
    );
    wait_until(Duration::from_secs(15), || {
        Ok(std::fs::read_to_string(&log)?.contains("sipwall: filtering"))
    })
    .with_context(|| {
        format!(
            "sipwall run did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })?;
    print_indented(std::fs::read_to_string(&log)?.trim_end());

    step(&format!(
        "the PBX answers with media on port {CALLS_PBX_MEDIA}; the provider calls it and stays on the line for 4 s"
    ));
    let media_port = CALLS_PBX_MEDIA.to_string();
    let _uas = Uas::start_on(
        lab,
        Host::Pbx,
        IpAddr::V4(PBX),
        Transport::Udp,
        &["-mp", &media_port],
    )?;
    let provider = IpAddr::V4(PROVIDER[0]);
    let provider_media = CALLS_PROVIDER_MEDIA.to_string();
    let placing = sipp::start_calls(
        lab,
        Host::Provider,
        provider,
        SocketAddr::new(IpAddr::V4(PBX), sipp::SIP_PORT),
        Transport::Udp,
        1,
        Duration::from_secs(4),
        &["-mp", &provider_media],
    )?;
    wait_until(Duration::from_secs(3), || {
        Ok(sipwall(lab, exe, &["pinhole", "list", "-i", PBX_IFACE])?
            .contains(&PROVIDER[0].to_string()))
    })
    .context("the call's pinholes did not open")?;
    step("the call's pinholes: sipwall pinhole list");
    print_indented(&sipwall(lab, exe, &["pinhole", "list", "-i", PBX_IFACE])?);

    let before = unsolicited(lab, exe)?;
    let to = SocketAddr::new(IpAddr::V4(PBX), CALLS_PBX_MEDIA + 1);
    let sink = Sink::start(traffic::udp_socket(lab, Host::Pbx, to)?)?;
    step(&format!(
        "the provider sends {RTP_PACKETS} RTCP packets to the call's port {}, then the outsider {RTP_PACKETS}",
        to.port()
    ));
    let from_provider =
        traffic::udp_socket(lab, Host::Provider, SocketAddr::new(provider, SENDER_PORT))?;
    traffic::send(&from_provider, to, RTP_PACKETS, RTP_PAYLOAD)?;
    let provider_arrived = sink.wait_for(RTP_PACKETS, Duration::from_secs(3));
    println!(
        "  {:<15} -> pbx: {provider_arrived}/{RTP_PACKETS} arrived   {}",
        PROVIDER[0].to_string(),
        if provider_arrived == RTP_PACKETS {
            "PASSED (rtp_allowed)"
        } else {
            "LOST"
        }
    );
    let from_outsider = traffic::udp_socket(
        lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), SENDER_PORT),
    )?;
    traffic::send(&from_outsider, to, RTP_PACKETS, RTP_PAYLOAD)?;
    std::thread::sleep(Duration::from_millis(300));
    let outsider_arrived = sink.received() - provider_arrived;
    let dropped = unsolicited(lab, exe)? - before;
    println!(
        "  {:<15} -> pbx: {outsider_arrived}/{RTP_PACKETS} arrived   {}",
        OUTSIDER.to_string(),
        if outsider_arrived == 0 {
            "DROPPED (rtp_unsolicited)"
        } else {
            "GOT THROUGH"
        }
    );
    let calls = placing.wait()?;
    step("the call ended (BYE): sipwall pinhole list");
    wait_until(Duration::from_secs(2), || {
        Ok(!sipwall(lab, exe, &["pinhole", "list", "-i", PBX_IFACE])?
            .contains(&PROVIDER[0].to_string()))
    })
    .context("the call's pinholes did not close after BYE")?;
    print_indented(&sipwall(lab, exe, &["pinhole", "list", "-i", PBX_IFACE])?);

    step("checking the counters against the traffic sent");
    let checks = [
        ("provider call answered", calls.successful, 1),
        ("provider media arrived", provider_arrived, RTP_PACKETS),
        ("outsider media arrived", outsider_arrived, 0),
        (
            "rtp_unsolicited packets = outsider media sent",
            dropped,
            RTP_PACKETS,
        ),
    ];
    let wrong = print_checks(&checks);
    step("stopping sipwall run (SIGTERM): it detaches");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(run.0.id() as libc::pid_t, libc::SIGTERM) };
    let _ = lab::wait_child(&mut run.0, Duration::from_secs(10))?;
    print_indented(
        std::fs::read_to_string(&log)?
            .lines()
            .last()
            .unwrap_or_default(),
    );
    if !wrong.is_empty() {
        bail!(
            "demo: calls mode did not behave as expected: {}",
            wrong.join("; ")
        );
    }
    Ok(())
}

/// A child process killed and reaped when dropped (also on an error).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `rtp_unsolicited` counter now.
fn unsolicited(lab: &Lab, exe: &Path) -> Result<u64> {
    let stats: Value =
        serde_json::from_str(&sipwall(lab, exe, &["stats", "-i", PBX_IFACE, "--json"])?)
            .context("reading `sipwall stats --json`")?;
    Ok(
        stats["interfaces"][0]["counters"][Reason::RtpUnsolicited.name()]["packets"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// Polls `done` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = std::time::Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if std::time::Instant::now() > end {
            bail!("not within {timeout:?}");
        }
        lab::sleep(Duration::from_millis(50))?;
    }
}

/// Prints each (what, got, expected) with ok/WRONG; returns the wrong ones.
fn print_checks<'a>(checks: &[(&'a str, u64, u64)]) -> Vec<&'a str> {
    let mut wrong = Vec::new();
    for &(what, got, want) in checks {
        let ok = got == want;
        println!(
            "  {:<50} {got:>5} (expected {want:>3})  {}",
            what,
            if ok { "ok" } else { "WRONG" }
        );
        if !ok {
            wrong.push(what);
        }
    }
    wrong
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

/// Runs this very binary as `sipwall --bpffs <lab's> ARGS` inside the PBX.
fn sipwall(lab: &Lab, exe: &Path, args: &[&str]) -> Result<String> {
    lab::check_stop()?;
    let out = lab
        .sipwall(exe, args)
        .output()
        .with_context(|| format!("running sipwall {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "sipwall {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
