//! sipp peers for tests: the product's [`sipwall_lab::sipp`] (UAS on the
//! PBX, UAC from any lab host, results parsed from sipp's own statistics),
//! with helpers that panic with a message naming the case.
use std::net::IpAddr;

pub use sipwall_lab::sipp::{Calls, Transport, Uas, SIP_PORT};

use crate::netns::{Host, TestLab};

/// Starts a UAS on the PBX, panicking with sipp's complaint if it can't.
pub fn uas(lab: &TestLab, transport: Transport) -> Uas {
    Uas::start(lab, transport)
        .unwrap_or_else(|e| panic!("starting sipp UAS ({transport:?}): {e:#}"))
}

/// Places `n` calls from `host` with source `src`; `case` names the call in
/// panic messages.
pub fn call(
    lab: &TestLab,
    case: &str,
    host: Host,
    src: IpAddr,
    transport: Transport,
    n: u32,
) -> Calls {
    sipwall_lab::sipp::call(lab, host, src, transport, n)
        .unwrap_or_else(|e| panic!("{case}: running sipp UAC: {e:#}"))
}

/// Asserts that every call was answered.
pub fn expect_answered(case: &str, calls: &Calls) {
    assert!(
        calls.all_succeeded(),
        "{case}: expected {} answered calls, got {} (failed {}, exit {:?})\n{}",
        calls.attempted,
        calls.successful,
        calls.failed,
        calls.exit,
        tail(&calls.log)
    );
}

/// Asserts that no call was answered (and sipp did say so by failing).
pub fn expect_unanswered(case: &str, calls: &Calls) {
    assert!(
        calls.none_succeeded() && calls.exit != Some(0),
        "{case}: expected no answered call, got {} of {} (exit {:?})\n{}",
        calls.successful,
        calls.attempted,
        calls.exit,
        tail(&calls.log)
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
