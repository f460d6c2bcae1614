//! The demo (`sipwall-demo`, as `cargo xtask demo` runs it), run as a
//! newcomer would: it must show the provider's calls
//! answered, the outsider's dropped, RTP through, non-zero counters, and
//! leave nothing behind — also when interrupted with Ctrl-C.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sipwall_tests::netns::{demo_bin, OUTSIDER, PROVIDER};

/// Packets of a reason in the demo's `sipwall stats` table.
fn counter(output: &str, reason: &str) -> u64 {
    output
        .lines()
        .map(str::split_whitespace)
        .find_map(|mut words| {
            (words.next() == Some(reason)).then(|| {
                let _verdict = words.next();
                words.next().and_then(|p| p.parse().ok())
            })?
        })
        .unwrap_or_else(|| panic!("no `{reason}` row in the demo's stats table:\n{output}"))
}

/// Nothing named after the demo process `pid` may remain: namespaces, the
/// bpffs mount, its folder under /run.
fn assert_nothing_left(pid: u32) {
    let base = format!("sipwall-demo-{pid}-");
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(&base), "namespaces left behind:\n{netns}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&base), "mounts left behind:\n{mounts}");
    let run: Vec<String> = std::fs::read_dir("/run")
        .expect("/run")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&base))
        .collect();
    assert!(run.is_empty(), "folders left behind in /run: {run:?}");
}

#[test]
fn demo_shows_the_policy_and_cleans_up() {
    sipwall_tests::skip_unless_root!();
    let child = Command::new(demo_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sipwall-demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("waiting for sipwall-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sipwall-demo failed ({}):\n{all}",
        out.status
    );

    // Each row: what the demo must have printed, and why.
    let expected = [
        (
            format!("{} -> pbx: 3/3 calls answered", PROVIDER[0]),
            "first provider address is allowlisted",
        ),
        (
            format!("{} -> pbx: 3/3 calls answered", PROVIDER[1]),
            "second provider address is allowlisted",
        ),
        (
            format!("{OUTSIDER} -> pbx: 0/2 calls answered"),
            "outsider's INVITEs are dropped",
        ),
        (
            format!("{OUTSIDER} -> pbx: 50/50 RTP packets arrived"),
            "RTP passes from anywhere",
        ),
        ("detached sipwall from wan0".to_owned(), "the demo detaches"),
        ("lab removed".to_owned(), "the demo cleans up"),
    ];
    let squeezed: String = stdout
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    for (line, why) in &expected {
        assert!(
            squeezed.contains(line.as_str()),
            "demo output lacks `{line}` ({why}):\n{all}"
        );
    }
    for reason in ["sip_allowed", "sip_denied", "rtp_allowed"] {
        assert!(
            counter(&stdout, reason) > 0,
            "{reason} stayed 0 in the demo:\n{all}"
        );
    }
    assert!(
        !stdout.contains("WRONG"),
        "the demo's own checks failed:\n{all}"
    );
    assert_nothing_left(pid);
}

#[test]
fn interrupted_demo_cleans_up() {
    sipwall_tests::skip_unless_root!();
    let mut child = Command::new(demo_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sipwall-demo");
    let pid = child.id();
    // Interrupt once the lab is up and sipwall attached: mid-calls.
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.by_ref() {
        let line = line.expect("reading demo output");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("the provider places") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo never reached the calls:\n{seen}"
        );
    }
    assert!(
        seen.contains("the provider places"),
        "demo ended before the calls:\n{seen}"
    );
    // SAFETY: kill has no memory effects; the pid is the demo this test
    // started and still waits for.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    for line in lines {
        seen.push_str(&line.expect("reading demo output"));
        seen.push('\n');
    }
    let status = child.wait().expect("waiting for the demo");
    assert!(
        !status.success(),
        "an interrupted demo must not report success:\n{seen}"
    );
    assert!(
        seen.contains("lab removed"),
        "interrupted demo did not clean up:\n{seen}"
    );
    assert_nothing_left(pid);
}
