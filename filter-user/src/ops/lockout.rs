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
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use ipnet::IpNet;

use super::sessions::{self, Source, SshSession};
use crate::{
    error::UsageError,
    kernel::{attach, attachment::Attachment, maps::Maps, pins::PinRoot},
    policy::ruleset::{AllowRule, RuleProto, Ruleset},
};

/// Refuses (exit 2) a ban that would cut the operator off: a prefix of
/// length 0 (every source of a family, the provider and the operator
/// included), or one covering the client address of their SSH session
/// (`SSH_CONNECTION`). `ban add --force` skips this; fail2ban's action runs
/// without `SSH_CONNECTION`, so it is never refused here for an address.
/// (Established connections to sshd are not looked at: a password guesser
/// fail2ban bans has one.)
pub fn check_bans(nets: &[IpNet]) -> Result<(), UsageError> {
    if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0) {
        return Err(UsageError(format!(
            "ban add {net}: bans every {} source, the provider's and yours included; nothing changed (--force to ban it anyway)",
            if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        )));
    }
    let Some(client) = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|text| sessions::parse_ssh_connection(&text))
        .map(|s| s.client)
    else {
        return Ok(());
    };
    match nets.iter().find(|n| n.contains(&client)) {
        Some(net) => Err(UsageError(format!(
            "ban add {net}: it covers your own SSH client {client} (SSH_CONNECTION): every packet of your session would be dropped; nothing changed (--force to ban it anyway)"
        ))),
        None => Ok(()),
    }
}

/// Refuses (exit 2) a strict `ruleset` under which a new TCP connection
/// from an SSH client's address to its SSH port would not pass by a rule
/// (no essential traffic is TCP), naming the rule to add. A seeded flow
/// keeps today's session, not tomorrow's login. Strict egress must let the
/// SSH server's answers out too: by that same rule (its answers are
/// `out_reply`) or an `[[egress.allow]]` rule to the operator's address.
/// The sessions are those sshd holds in this network namespace, else
/// `SSH_CONNECTION` ([`sessions::find`]); with neither, a warning on
/// stderr says the policy goes on unguarded. Dry run drops nothing and
/// passes; `force` overrides.
pub fn check_ssh_guard(ruleset: &Ruleset, force: bool) -> Result<(), UsageError> {
    let egress = ruleset.egress.strict();
    if !(ruleset.strict() || egress) || ruleset.dry_run || force {
        return Ok(());
    }
    let Some((source, found)) = sessions::find() else {
        eprintln!(
            "sipwall: warning: no SSH session found (no logged-in connection to a port sshd listens on in this network namespace, and no SSH_CONNECTION): the SSH guard cannot tell whether this strict policy keeps your next login; apply it with --confirm SECS to be safe"
        );
        return Ok(());
    };
    found
        .iter()
        .try_for_each(|session| check_session(ruleset, session, source))
}

/// [`check_ssh_guard`] for one session.
fn check_session(
    ruleset: &Ruleset,
    session: &SshSession,
    source: Source,
) -> Result<(), UsageError> {
    let egress = ruleset.egress.strict();
    let SshSession {
        client,
        client_port,
        port,
    } = *session;
    let how = source.name();
    if ruleset.strict() && ruleset.sig_ports.contains(&port) {
        return Err(UsageError(format!(
            "strict mode would lock you out: the SSH session of {client} ({how}) came in on TCP port {port}, a signalling port, where only the allowlist passes. Move SSH to another port, or use --force"
        )));
    }
    let ruled = ruleset.rules.iter().any(|r| r.allows(6, client, port));
    // The answers: from the SSH port to the client's port.
    let answered = ruled
        || (ruleset.sig_ports.contains(&port) && ruleset.allow.iter().any(|n| n.contains(&client)))
        || ruleset
            .egress
            .rules
            .iter()
            .any(|r| r.allows(6, client, client_port));
    if (!ruleset.strict() || ruled) && (!egress || answered) {
        return Ok(());
    }
    let prefix = if client.is_ipv4() { 32 } else { 128 };
    let rule = AllowRule {
        proto: RuleProto::Tcp,
        ports: vec![(port, port)],
        from: vec![ipnet::IpNet::new(client, prefix).expect("a host prefix")],
    };
    let what = if ruleset.strict() {
        format!(
            "strict mode would lock you out: a new SSH connection from {client} to TCP port {port} ({how}) would be denied; your session would survive, your next login would not"
        )
    } else {
        format!(
            "strict egress would lock you out: the answers of the SSH session from {client} (from TCP port {port}, {how}) would be dropped as out_denied; a [[strict.allow]] rule for your SSH port lets them out as out_reply (in guard mode it filters nothing inbound)"
        )
    };
    Err(UsageError(format!(
        "{what}. Add this rule (or your management network instead of the /{prefix}) and try again, or use --force:\n\n{}",
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

/// The policy in force on `iface` now, to return to: nothing when sipwall
/// is not attached there. Pins that are there but cannot be read are an
/// error: taking them for "nothing" would make the rollback detach a filter
/// that was in force before.
pub fn previous(root: &PinRoot, iface: &str) -> Result<Previous> {
    let attached = root.attached()?.iter().any(|name| name == iface);
    if !attached {
        return Ok(Previous::Nothing);
    }
    let why = || {
        format!(
            "--confirm needs the policy in force on {iface} to return to, and it cannot be read (`sipwall status -i {iface}` says why); nothing changed"
        )
    };
    let a = Attachment::open(root, Some(iface)).with_context(why)?;
    // A second --confirm while one waits would make each roll back to the
    // other's unconfirmed policy.
    if let Some(pid) = a.maps.confirm_pending()?.map(|token| (token >> 32) as i32) {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if alive {
            return Err(UsageError(format!(
                "another --confirm (process {pid}) waits on {iface}: run `sipwall confirm -i {iface}` or let it roll back first; nothing changed"
            ))
            .into());
        }
    }
    Ok(Previous::Policy(a.maps.read_ruleset().with_context(why)?))
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
