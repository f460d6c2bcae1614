//! Never locked out (docs/policy.md, "Strict mode"): the SSH guard that
//! refuses a strict policy which would deny the operator's next login, and
//! `--confirm`, which takes a policy back unless `sipwall confirm` (or
//! Enter) arrives in time, even after the terminal is gone.
//!
//! How `confirm` reaches the waiting process: the pinned `CONFIRM` map of
//! the interface. The waiter writes a token into its first slot; `sipwall
//! confirm` copies it into the second; the waiter polls the map. Nothing
//! depends on the terminal, a pid file or a signal, and `detach` removes
//! the map with every other pin.
use std::{
    io::Write as _,
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    error::UsageError,
    kernel::{attach, attachment::Attachment, maps::Maps, pins::PinRoot},
    policy::ruleset::{AllowRule, RuleProto, Ruleset},
};

/// The operator's SSH session as `SSH_CONNECTION` gives it: their address
/// and the local port they came in on.
pub fn ssh_connection() -> Option<(IpAddr, u16)> {
    let text = std::env::var("SSH_CONNECTION").ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let client: IpAddr = fields.first()?.parse().ok()?;
    let port: u16 = fields.get(3)?.parse().ok()?;
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    Some((client, port))
}

/// Refuses (exit 2) a strict `ruleset` under which a new TCP connection
/// from the operator's address to their SSH port would not pass by a rule
/// (no essential traffic is TCP), naming the rule to add. A seeded flow
/// keeps today's session, not tomorrow's login. Dry run drops nothing and
/// passes; `force` overrides.
pub fn check_ssh_guard(ruleset: &Ruleset, force: bool) -> Result<(), UsageError> {
    if !ruleset.strict() || ruleset.dry_run || force {
        return Ok(());
    }
    let Some((client, port)) = ssh_connection() else {
        return Ok(());
    };
    if ruleset.sig_ports.contains(&port) {
        return Err(UsageError(format!(
            "strict mode would lock you out: your SSH session came in on TCP port {port}, a signalling port, where only the allowlist passes. Move SSH to another port, or use --force"
        )));
    }
    if ruleset.rules.iter().any(|r| r.allows(6, client, port)) {
        return Ok(());
    }
    let prefix = if client.is_ipv4() { 32 } else { 128 };
    let rule = AllowRule {
        proto: RuleProto::Tcp,
        ports: vec![(port, port)],
        from: vec![ipnet::IpNet::new(client, prefix).expect("a host prefix")],
    };
    Err(UsageError(format!(
        "strict mode would lock you out: a new SSH connection from {client} to TCP port {port} (SSH_CONNECTION) would be denied; your session would survive, your next login would not. Add this rule (or your management network instead of the /{prefix}) and try again, or use --force:\n\n{}",
        rule.to_toml()
    )))
}

/// Set by SIGINT and SIGTERM while a confirmation is awaited: roll back now.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Output that never fails: the terminal may be gone (writes then return
/// EIO, and `println!` would panic before the rollback).
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
    let _ = std::io::stdout().flush();
}

/// A token no other waiter holds: pid and time.
pub fn token() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    (u64::from(std::process::id()) << 32 | u64::from(nanos)) | 1
}

/// What to go back to when no confirmation comes.
pub enum Previous {
    /// The policy in force before (re-installed as a new generation).
    Policy(Ruleset),
    /// Nothing was attached: detach.
    Nothing,
}

/// Waits up to `secs` seconds for `sipwall confirm` or Enter, printing a
/// countdown. Without either, goes back to `previous`, then fails (exit 1).
/// SIGHUP (the terminal closing) is ignored; SIGINT and SIGTERM roll back
/// at once.
pub fn await_confirmation(
    root: &PinRoot,
    iface: &str,
    maps: &mut Maps,
    previous: Previous,
    secs: u64,
) -> Result<()> {
    // SAFETY: installing handlers that only store to an atomic, and
    // ignoring SIGHUP and SIGPIPE; all async-signal-safe.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        // Output to a closed pipe must not kill the waiter either.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    let token = token();
    maps.set_confirm_pending(token)?;
    let enter = AtomicBool::new(false);
    let enter = &*Box::leak(Box::new(enter));
    // Enter at the prompt confirms; end of input (the terminal gone, or
    // stdin not a terminal) does not.
    std::thread::spawn(move || {
        let mut line = String::new();
        if matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
            enter.store(true, Ordering::SeqCst);
        }
    });
    say(&format!(
        "sipwall: keep this policy on {iface}? Press Enter or run `sipwall confirm -i {iface}` within {secs} s, or it is rolled back."
    ));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last_shown = u64::MAX;
    let confirmed = loop {
        if enter.load(Ordering::SeqCst) || maps.confirmed(token)? {
            break true;
        }
        let now = Instant::now();
        if now >= deadline || INTERRUPTED.load(Ordering::SeqCst) {
            break false;
        }
        let left = (deadline - now).as_secs() + 1;
        if left != last_shown && (left <= 10 || left.is_multiple_of(10)) {
            say(&format!("sipwall: {left} s left to confirm"));
            last_shown = left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if confirmed {
        maps.set_confirm_pending(0)?;
        say(&format!("sipwall: confirmed; the policy on {iface} stays"));
        return Ok(());
    }
    let why = if INTERRUPTED.load(Ordering::SeqCst) {
        "interrupted before a confirmation"
    } else {
        "no confirmation in time"
    };
    match previous {
        Previous::Policy(ruleset) => {
            let _lock = root.lock()?;
            maps.install(&ruleset)
                .with_context(|| format!("rolling back the policy of {iface}"))?;
            maps.set_confirm_pending(0)?;
            say(&format!(
                "sipwall: {why}: rolled back {iface} to the previous policy ({})",
                ruleset.summary()
            ));
        }
        Previous::Nothing => {
            attach::detach(root, iface)
                .with_context(|| format!("rolling back: detaching from {iface}"))?;
            say(&format!(
                "sipwall: {why}: rolled back: detached from {iface} (nothing was attached before)"
            ));
        }
    }
    bail!("{why}: the policy on {iface} was rolled back")
}

/// The policy in force on `iface` now, to return to.
pub fn previous(root: &PinRoot, iface: &str) -> Previous {
    match Attachment::open(root, Some(iface)) {
        Ok(a) => match a.maps.read_ruleset() {
            Ok(r) => Previous::Policy(r),
            Err(_) => Previous::Nothing,
        },
        Err(_) => Previous::Nothing,
    }
}

/// `sipwall confirm`: tells the waiting process to keep its policy.
pub fn confirm(root: &PinRoot, iface: Option<&str>) -> Result<String> {
    let mut a = Attachment::open(root, iface)?;
    let Some(token) = a.maps.confirm_pending()? else {
        bail!(
            "nothing on {} waits for a confirmation (it was confirmed, rolled back, or applied without --confirm)",
            a.iface
        );
    };
    a.maps.give_confirmation(token)?;
    // The waiter clears the token once it has seen the confirmation.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if a.maps.confirm_pending()? != Some(token) {
            return Ok(a.iface);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "confirmed on {}, but the waiting process did not answer within 3 s (it may have been killed: check `sipwall status`)",
        a.iface
    )
}
