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

    let result = show(&lab, &exe);
    step("cleaning up: deleting the namespaces (with the veths and the XDP attachment) and the private bpffs");
    drop(lab);
    println!("  lab removed");
    match &result {
        Ok(()) => println!("\ndemo finished: signalling only from the provider, media from anyone, every packet counted."),
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
    let mut wrong = Vec::new();
    for (what, got, want) in checks {
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
