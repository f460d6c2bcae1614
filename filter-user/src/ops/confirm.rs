//! `--confirm`, written once: a policy applied with it is taken back unless
//! `sipwall confirm` (or Enter at the prompt) arrives in time, even after
//! the terminal is gone. `attach` waits in the foreground
//! ([`await_confirmation`]); `run` polls the same [`Pending`] from its event
//! loop.
//!
//! The states: *pending* (a token in the interface's pinned `CONFIRM` map,
//! and a deadline), then either *confirmed* (the token cleared, the policy
//! stays) or *rolled back* (the deadline passed or the process was stopped:
//! the policy in force before is installed again, or, when nothing was
//! attached before, the filter is detached).
//!
//! How `confirm` reaches the waiting process: the waiter writes its token
//! into the map's first slot; `sipwall confirm` copies it into the second;
//! the waiter polls the map and clears the first slot when it has seen it.
//! Nothing depends on the terminal, a pid file or a signal, and `detach`
//! removes the map with every other pin.
use std::{
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use filter_kernel::{attach, attachment::Attachment, maps::Maps, pins::PinRoot};
use filter_policy::ruleset::Ruleset;

use crate::error::UsageError;

/// What to go back to when no confirmation comes.
pub enum Previous {
    /// The policy in force before (re-installed as a new generation).
    Policy(Ruleset),
    /// Nothing was attached: detach.
    Nothing,
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

/// A token no other waiter holds: pid (which `previous` reads back) and
/// time.
fn token() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    (u64::from(std::process::id()) << 32 | u64::from(nanos)) | 1
}

/// A policy waiting for its confirmation.
pub struct Pending {
    iface: String,
    token: u64,
    deadline: Instant,
    previous: Previous,
}

/// Where a pending confirmation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Still waiting, this many whole seconds left (rounded up).
    Waiting(u64),
    Confirmed,
    /// The deadline passed without a confirmation.
    Expired,
}

impl Pending {
    /// Starts waiting `secs` seconds for a confirmation of the policy now
    /// in force on `iface`: its token goes into the `CONFIRM` map.
    pub fn arm(iface: &str, maps: &mut Maps, previous: Previous, secs: u64) -> Result<Pending> {
        let token = token();
        maps.set_confirm_pending(token)?;
        Ok(Pending {
            iface: iface.to_string(),
            token,
            deadline: Instant::now() + Duration::from_secs(secs),
            previous,
        })
    }

    /// Where the wait stands; `by_operator` is a confirmation that came
    /// another way (Enter at the prompt). A `CONFIRM` map that cannot be
    /// read confirms nothing: the wait ends in a rollback, never in an
    /// unconfirmed policy kept.
    pub fn poll(&self, maps: &Maps, by_operator: bool) -> State {
        if by_operator || maps.confirmed(self.token).unwrap_or(false) {
            return State::Confirmed;
        }
        let now = Instant::now();
        if now >= self.deadline {
            return State::Expired;
        }
        State::Waiting((self.deadline - now).as_secs() + 1)
    }

    /// Keeps the policy: clears the token, which also tells `sipwall
    /// confirm` that it was seen. What to say.
    pub fn keep(self, maps: &mut Maps) -> Result<String> {
        maps.set_confirm_pending(0)?;
        Ok(format!(
            "sipwall: confirmed; the policy on {} stays",
            self.iface
        ))
    }

    /// Goes back to the policy in force before, or detaches when there was
    /// none (nothing was there before, so nothing stays). `why` starts what
    /// it says; whether the filter is still attached.
    pub fn roll_back(self, root: &PinRoot, maps: &mut Maps, why: &str) -> Result<(bool, String)> {
        let iface = self.iface;
        match self.previous {
            Previous::Policy(ruleset) => {
                root.lock()
                    .and_then(|_lock| maps.install(&ruleset))
                    .with_context(|| format!("rolling back the policy of {iface}"))?;
                maps.set_confirm_pending(0)?;
                let said = format!(
                    "sipwall: {why}: rolled back {iface} to the previous policy ({})",
                    ruleset.summary()
                );
                Ok((true, said))
            }
            Previous::Nothing => {
                attach::detach(root, &iface)
                    .with_context(|| format!("rolling back: detaching from {iface}"))?;
                let said = format!(
                    "sipwall: {why}: rolled back: detached from {iface} (nothing was attached before)"
                );
                Ok((false, said))
            }
        }
    }
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

/// Waits up to `secs` seconds in the foreground for `sipwall confirm` or
/// Enter, printing a countdown. Without either, goes back to `previous`,
/// then fails (exit 1). SIGHUP (the terminal closing) is ignored; SIGINT
/// and SIGTERM roll back at once.
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
    let pending = Pending::arm(iface, maps, previous, secs)?;
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
    let mut last_shown = u64::MAX;
    let confirmed = loop {
        match pending.poll(maps, enter.load(Ordering::SeqCst)) {
            State::Confirmed => break true,
            State::Expired => break false,
            State::Waiting(_) if INTERRUPTED.load(Ordering::SeqCst) => break false,
            State::Waiting(left) => {
                if left != last_shown && (left <= 10 || left.is_multiple_of(10)) {
                    say(&format!("sipwall: {left} s left to confirm"));
                    last_shown = left;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if confirmed {
        say(&pending.keep(maps)?);
        return Ok(());
    }
    let why = if INTERRUPTED.load(Ordering::SeqCst) {
        "interrupted before a confirmation"
    } else {
        "no confirmation in time"
    };
    let (_, said) = pending.roll_back(root, maps, why)?;
    say(&said);
    bail!("{why}: the policy on {iface} was rolled back")
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
