//! `sipwall top --watch`: the denied sources redrawn with per-second rates,
//! one JSON document per line, in the namespace lab. Needs root and
//! `cargo build -p filter-user`.
use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use serde_json::Value;
use sipwall_tests::{
    netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE},
    skip_unless_root,
};

/// Kills the watching child when the test ends, also on failure.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn top_watch_shows_each_source_with_its_rate() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    // A source port outside the provider's media ports and the ephemeral range.
    let tx = lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 30123);
    let to = SocketAddr::new(IpAddr::V4(PBX), 5060);
    traffic::send(&tx, to, 10, 64).unwrap_or_else(|e| panic!("{e:#}"));

    let mut child = lab.sipwall_command(&["top", "-i", PBX_IFACE, "--json", "--watch", "0.2"]);
    child.stdout(Stdio::piped());
    let mut watcher = Watcher(child.spawn().expect("spawning top --watch"));
    let mut lines = BufReader::new(watcher.0.stdout.take().expect("stdout")).lines();
    let mut next = || -> Value {
        let line = lines
            .next()
            .expect("top --watch ended early")
            .expect("reading top --watch");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let outsider = |doc: &Value| -> Option<Value> {
        doc["sources"]
            .as_array()?
            .iter()
            .find(|s| s["addr"] == OUTSIDER.to_string())
            .cloned()
    };
    let first = next();
    assert_eq!(first["reason"], "sip_denied", "{first}");
    let seen = outsider(&first).unwrap_or_else(|| panic!("the outsider is listed: {first}"));
    let before = seen["packets"].as_u64().expect("packets");
    assert!(before >= 1, "{first}");
    assert!(seen["packets_per_s"].is_number(), "{first}");

    // More packets: a later document shows them as a rate above zero,
    // and every document's total keeps growing with what was sent.
    traffic::send(&tx, to, 50, 64).unwrap_or_else(|e| panic!("{e:#}"));
    let moving = (0..50).map(|_| next()).find(|doc| {
        outsider(doc).is_some_and(|s| {
            s["packets_per_s"].as_f64() > Some(0.0) && s["packets"].as_u64() > Some(before)
        })
    });
    let doc = moving.expect("no document showed the outsider's new packets as a rate");
    let s = outsider(&doc).unwrap();
    assert!(s["bytes_per_s"].as_f64() > Some(0.0), "{doc}");
    drop(watcher);
}
