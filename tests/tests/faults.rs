//! Faults injected into a running filter, through the real binary: a tool
//! killed half-way through a large allowlist swap, re-attaching under
//! traffic, the interface deleted and created again, pins removed by hand,
//! commands racing each other, and configuration reloads that catch a file
//! while it is being written. Each ends in a state `status` tells
//! truthfully, with the filter enforcing a whole policy, and the next
//! command working without manual repair.
use std::{
    collections::BTreeSet,
    fs::File,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use filter_common::Reason;
use filter_kernel::runner::{Runner, Verdict};
use ipnet::IpNet;
use serde_json::Value;
use sipwall_tests::{
    netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX6, PBX_IFACE, PROVIDER},
    operate::{
        bench_v4, big_rcvbuf, doc_v6, sipwall, waits_for_flock, write_list, xdp_prog,
        xdp_prog_after_release, Run,
    },
    packet::Frame,
};

const IFACE: &str = PBX_IFACE;

/// A small deterministic generator (xorshift64*); the seed is printed so a
/// failing run can be repeated with SIPWALL_FAULT_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("SIPWALL_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
            })
            | 1;
        println!("fault seed {seed} (set SIPWALL_FAULT_SEED to repeat)");
        Rng(seed)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn allow_set(lab: &TestLab) -> BTreeSet<IpNet> {
    lab.allowlist()
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

fn parse_set(list: &[String]) -> BTreeSet<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn status(lab: &TestLab) -> Value {
    sipwall_tests::operate::status_json(lab)
}

/// `status --json` of the PBX's interface: (attached, problems joined).
fn iface_status(lab: &TestLab) -> (bool, String) {
    let st = status(lab);
    let me = st["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["iface"] == IFACE))
        .unwrap_or_else(|| panic!("status does not list {IFACE}: {st}"));
    let problems = me["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    (me["attached"] == true, problems)
}

/// Starts `sipwall --bpffs <lab's> ARGS` in the PBX; `ip netns exec` execs
/// in place, so the child is sipwall itself and signals reach it.
fn spawn(lab: &TestLab, args: &[&str], stderr: Stdio) -> Child {
    sipwall_lab::Lab::sipwall(lab, &lab.bin, args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("starting sipwall {args:?}: {e}"))
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// A UDP datagram to the PBX's SIP port, from `src`, judged by `runner`.
fn sip_verdict(runner: &Runner, src: IpAddr) -> Verdict {
    let frame = match src {
        IpAddr::V4(s) => Frame::ipv4(s, PBX).udp(5555, 5060),
        IpAddr::V6(s) => Frame::ipv6(s, PBX6).udp(5555, 5060),
    }
    .build();
    let outcome = runner.run(&frame).expect("BPF_PROG_TEST_RUN");
    let want = match outcome.verdict {
        Verdict::Pass => Reason::SipAllowed,
        _ => Reason::SipDenied,
    };
    assert_eq!(outcome.reason(), Some(want), "{src}: {outcome:?}");
    outcome.verdict
}

#[test]
fn killed_allow_replace_leaves_the_old_or_the_new_set() {
    sipwall_tests::skip_unless_root!();
    const KILLS: usize = 20;
    // Updates now write only what changes, so the window in which a kill
    // tears the inactive copy is a small part of a command's run: until one
    // kill has landed there, keep killing, up to this many in all.
    const MAX_KILLS: usize = 80;
    let lab = TestLab::new();
    lab.attach(&[]);
    let dir = lab.pin_dir(IFACE);
    // Three sets of 20,000 prefixes that share nothing, each with one probe
    // address per family that only it allows. Three, because a replace
    // writes only the difference from what the inactive copy holds: each
    // replace below goes to the set that is neither active nor inactive,
    // so that it rewrites the inactive copy whole.
    let probes: [[IpAddr; 2]; 3] = [
        [
            Ipv4Addr::new(203, 0, 113, 10).into(),
            "2001:db8:5::1".parse::<Ipv6Addr>().unwrap().into(),
        ],
        [
            Ipv4Addr::new(203, 0, 113, 20).into(),
            "2001:db8:8005::1".parse::<Ipv6Addr>().unwrap().into(),
        ],
        [
            Ipv4Addr::new(203, 0, 113, 30).into(),
            "2001:db8:4005::1".parse::<Ipv6Addr>().unwrap().into(),
        ],
    ];
    let mut list_a = bench_v4(0, 9_999);
    list_a.push("203.0.113.10/32".into());
    list_a.extend(doc_v6(0, 10_000));
    let mut list_b = bench_v4(10_000, 9_999);
    list_b.push("203.0.113.20/32".into());
    list_b.extend(doc_v6(0x8000, 10_000));
    let mut list_c = bench_v4(20_000, 9_999);
    list_c.push("203.0.113.30/32".into());
    list_c.extend(doc_v6(0x4000, 10_000));
    let files = [
        lab.dir().join("a.txt"),
        lab.dir().join("b.txt"),
        lab.dir().join("c.txt"),
    ];
    write_list(&files[0], &list_a);
    write_list(&files[1], &list_b);
    write_list(&files[2], &list_c);
    let sets = [parse_set(&list_a), parse_set(&list_b), parse_set(&list_c)];
    assert!(
        sets[0].is_disjoint(&sets[1])
            && sets[1].is_disjoint(&sets[2])
            && sets[0].is_disjoint(&sets[2])
            && sets.iter().all(|s| s.len() == 20_000)
    );
    let replace = |which: usize| -> Command {
        // Run directly (so the kill below hits sipwall itself), in the
        // PBX's namespace by --netns.
        let mut cmd = Command::new(&lab.bin);
        cmd.arg("--bpffs")
            .arg(lab.bpffs())
            .arg("--netns")
            .arg(lab.ns(sipwall_tests::netns::Host::Pbx))
            .args(["allow", "replace", "--file"])
            .arg(&files[which])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    // How long a whole replace takes here, start to exit.
    let mut full = Duration::ZERO;
    for which in [2, 1, 0] {
        let t = Instant::now();
        assert!(replace(which).status().unwrap().success());
        full = full.max(t.elapsed());
    }
    assert_eq!(allow_set(&lab), sets[0]);
    // A second copy of the program on the pinned maps judges packets by the
    // live policy.
    let runner = Runner::from_pins(&dir).expect("loading a copy on the pinned maps");

    let mut rng = Rng::new();
    let inactive_copy = || -> BTreeSet<IpNet> {
        let maps = filter_kernel::maps::Maps::open_pinned(&dir).unwrap();
        let g = maps.active_generation().unwrap();
        maps.read_allowlist(1 - g).unwrap().into_iter().collect()
    };
    let mut current = 0;
    let (mut killed, mut finished, mut half_written) = (0, 0, 0);
    let mut kill = 0;
    while kill < KILLS || (half_written == 0 && kill < MAX_KILLS) {
        kill += 1;
        let inactive_before = inactive_copy();
        let target = (0..3)
            .find(|&s| s != current && sets[s] != inactive_before)
            .expect("three sets");
        let mut child = replace(target).spawn().unwrap();
        std::thread::sleep(full.mul_f64(0.2 + 0.75 * rng.unit()));
        signal(&child, libc::SIGKILL);
        let status = child.wait().unwrap();
        if status.success() {
            finished += 1;
        } else {
            killed += 1;
        }
        let case = format!("kill {kill} ({status}) replacing set {current} by {target}");

        // Map level: the active generation is one whole set.
        let now = allow_set(&lab);
        let enforced = (0..3).find(|&s| now == sets[s]).unwrap_or_else(|| {
            panic!(
                "{case}: the allowlist is neither set ({} entries)",
                now.len()
            )
        });
        if status.success() {
            assert_eq!(enforced, target, "{case}: finished, yet not swapped");
        }
        // Evidence this kill hit the swap itself: it left the inactive copy
        // changed and torn (neither set).
        let inactive = inactive_copy();
        if inactive != inactive_before && !sets.contains(&inactive) {
            half_written += 1;
        }

        // Packet level: exactly the probes of the enforced set pass.
        for (s, probes) in probes.iter().enumerate() {
            for &p in probes {
                let want = if s == enforced {
                    Verdict::Pass
                } else {
                    Verdict::Drop
                };
                assert_eq!(
                    sip_verdict(&runner, p),
                    want,
                    "{case}: set {enforced} listed, probe {p} of set {s}"
                );
            }
        }
        current = enforced;
    }
    // The next commands work without repair.
    let target = (current + 1) % 3;
    assert!(replace(target).status().unwrap().success());
    assert_eq!(allow_set(&lab), sets[target]);
    sipwall(&lab, &["allow", "add", "192.0.2.77"]).ok("allow add after the kills");
    assert!(allow_set(&lab).contains(&"192.0.2.77/32".parse().unwrap()));
    assert_eq!(iface_status(&lab), (true, String::new()));
    drop(runner);
    println!(
        "faults injected: {kill} SIGKILLs of `allow replace` (20,000 entries, ~{full:?} each): \
         {killed} killed mid-way ({half_written} left the inactive copy half-written), \
         {finished} had finished"
    );
    assert!(
        half_written > 0,
        "no kill landed inside the swap: the test did not exercise it"
    );
}

#[test]
fn reattach_under_traffic_denies_nothing() {
    sipwall_tests::skip_unless_root!();
    const REATTACHES: usize = 20;
    let lab = TestLab::new();
    lab.attach(&[]);
    let sock = lab.udp(Host::Pbx, PBX.into(), 5060);
    big_rcvbuf(&sock);
    let sink = traffic::Sink::start(sock).unwrap();
    let sender = lab.udp(Host::Provider, PROVIDER[0].into(), 0);
    let to = SocketAddr::new(PBX.into(), 5060);
    // Warm up: neighbour resolution on the way may drop the first packets.
    traffic::send(&sender, to, 5, 8).unwrap();
    assert_eq!(sink.wait_for(5, Duration::from_secs(5)), 5, "warm-up lost");
    let before = lab.counters();
    let received_before = sink.received();

    // 1 ms apart: a detach gap during a swap would let some pass uncounted.
    let stream = traffic::Stream::start(sender, to, 1000);
    let mut programs = vec![xdp_prog(&lab, IFACE).unwrap()];
    for i in 0..REATTACHES {
        std::thread::sleep(Duration::from_millis(50));
        let out = lab.attach(&[]);
        assert!(
            out.contains("replaced the sipwall program on wan0 in place")
                && out.contains("allowlist and counters kept"),
            "re-attach {i}: {out}"
        );
        let now = xdp_prog(&lab, IFACE).unwrap();
        assert!(
            !programs.contains(&now),
            "re-attach {i} did not swap the program"
        );
        programs.push(now);
    }
    std::thread::sleep(Duration::from_millis(50));
    let sent = stream.stop().unwrap();
    let received = sink.wait_for(received_before + sent, Duration::from_secs(5)) - received_before;
    let d = sipwall_tests::netns::delta(&before, &lab.counters());
    assert_eq!(
        d["sip_denied"].packets, 0,
        "allowlisted packets denied during re-attach"
    );
    assert_eq!(d["sip_allowed"].packets, sent, "sip_allowed != sent");
    assert_eq!(received, sent, "the PBX did not receive every datagram");
    println!(
        "faults injected: {REATTACHES} re-attaches (program swapped each time) under {sent} \
         allowlisted datagrams: all received, none denied"
    );
}

/// Sends `n` datagrams from `host` (bound to `src`) to the PBX's SIP port.
fn send_sip(lab: &TestLab, host: Host, src: Ipv4Addr, n: u64) {
    let sock = lab.udp(host, src.into(), 0);
    traffic::send(&sock, SocketAddr::new(PBX.into(), 5060), n, 16).unwrap();
}

/// The provider's datagrams arrive, the outsider's are dropped, and the
/// counters say so.
fn assert_filtering(lab: &TestLab, case: &str) {
    let sock = lab.udp(Host::Pbx, PBX.into(), 5060);
    big_rcvbuf(&sock);
    let sink = traffic::Sink::start(sock).unwrap();
    // Neighbour resolution after the interface came back.
    send_sip(lab, Host::Provider, PROVIDER[0], 3);
    let warm = sink.wait_for(3, Duration::from_secs(5));
    assert!(warm > 0, "{case}: the provider cannot reach the PBX");
    std::thread::sleep(Duration::from_millis(100));
    let before = lab.counters();
    let base = sink.received();
    send_sip(lab, Host::Provider, PROVIDER[0], 20);
    send_sip(lab, Host::Outsider, OUTSIDER, 20);
    let got = sink.wait_for(base + 20, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let d = sipwall_tests::netns::delta(&before, &lab.counters());
    assert_eq!(
        (
            got - base,
            sink.received() - base,
            d["sip_allowed"].packets,
            d["sip_denied"].packets
        ),
        (20, 20, 20, 20),
        "{case}: (received, received after a pause, sip_allowed, sip_denied)"
    );
}

/// Deletes the PBX's interface (its router-side peer goes with it).
fn delete_iface(lab: &TestLab) {
    lab.exec(Host::Pbx, &["ip", "link", "del", IFACE]).unwrap();
}

/// Creates the PBX's link to the router again, as the lab first made it.
fn recreate_iface(lab: &TestLab) {
    let pbx_ns = lab.ns(Host::Pbx);
    let steps: &[(Host, &[&str])] = &[
        (
            Host::Router,
            &[
                "ip", "link", "add", "pbx", "type", "veth", "peer", "name", IFACE, "netns", &pbx_ns,
            ],
        ),
        (Host::Router, &["ip", "link", "set", "pbx", "up"]),
        (
            Host::Router,
            &["ip", "addr", "add", "192.0.2.254/24", "dev", "pbx"],
        ),
        (Host::Pbx, &["ip", "link", "set", IFACE, "up"]),
        (
            Host::Pbx,
            &["ip", "addr", "add", "192.0.2.1/24", "dev", IFACE],
        ),
        (
            Host::Pbx,
            &["ip", "route", "add", "default", "via", "192.0.2.254"],
        ),
    ];
    for (host, argv) in steps {
        lab.exec(*host, argv).unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[test]
fn interface_deleted_and_created_again() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");

    // Deleted: status says it is gone and that nothing filters; attach
    // cannot; detach cleans up.
    delete_iface(&lab);
    let (attached, problems) = iface_status(&lab);
    assert!(
        !attached && problems.contains("no longer exists"),
        "{problems}"
    );
    sipwall(&lab, &["attach", "-i", IFACE, "--mode", "native"]).expect(
        1,
        &["wan0 does not exist"],
        "attach to a deleted interface",
    );

    // Created again: status says it came back without the filter.
    recreate_iface(&lab);
    status_says_unfiltered(&lab, &["deleted and created again", "NOT filtering"]);
    // attach recovers, keeping the allowlist, and the filter works.
    attach_recovers_keeping_allowlist(&lab);
    assert_filtering(&lab, "re-attached after the interface came back");

    // Deleted again, then detach recovers.
    delete_iface(&lab);
    sipwall(&lab, &["detach", "-i", IFACE]).ok("detach after the interface went away");
    let run = sipwall(&lab, &["status"]);
    assert!(
        run.ok("status").contains("not attached to any interface"),
        "{run}"
    );
    recreate_iface(&lab);
    lab.attach(&[]);
    assert_filtering(&lab, "attached afresh after a detach");
    println!("faults injected: 2 interface deletions, 2 re-creations");
}

#[test]
fn pins_removed_by_hand() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let dir = lab.pin_dir(IFACE);

    // The whole folder: the link goes with its pin, so the filter is gone,
    // and status says nothing is attached.
    lab.attach(&[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        xdp_prog_after_release(&lab, IFACE),
        None,
        "the filter outlived its pins"
    );
    let run = sipwall(&lab, &["status"]);
    assert!(
        run.ok("status").contains("not attached to any interface"),
        "{run}"
    );
    sipwall(&lab, &["allow", "list"]).expect(1, &["not attached"], "allowlist of removed pins");
    lab.attach(&[]);
    assert_filtering(&lab, "attached after the pins were removed");

    // The link pin alone: the program leaves the interface, status says so,
    // attach puts it back with the allowlist.
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    std::fs::remove_file(dir.join("link")).unwrap();
    assert_eq!(
        xdp_prog_after_release(&lab, IFACE),
        None,
        "the link outlived its pin"
    );
    status_says_unfiltered(&lab, &["NOT filtering", "link is missing"]);
    attach_recovers_keeping_allowlist(&lab);

    // The counters map: the program keeps counting into its own copy;
    // stats says the pins are damaged; attach recreates the map (counters
    // start again) and keeps the allowlist.
    std::fs::remove_file(dir.join("COUNTERS")).unwrap();
    sipwall(&lab, &["stats"]).expect(1, &["COUNTERS", "damaged"], "stats without COUNTERS");
    let (attached, problems) = iface_status(&lab);
    assert!(attached && problems.contains("COUNTERS"), "{problems}");
    let run = sipwall(&lab, &["attach", "-i", IFACE, "--mode", "native"]);
    run.expect(
        0,
        &["incomplete", "COUNTERS", "recreated"],
        "repair COUNTERS",
    );
    assert_eq!(iface_status(&lab), (true, String::new()));
    assert!(lab.allowlist().contains(&"198.51.100.7/32".to_string()));
    assert_filtering(&lab, "after COUNTERS was recreated");
    println!("faults injected: 3 pin removals (folder, link, counters map)");
}

#[test]
fn concurrent_allow_adds_both_land() {
    sipwall_tests::skip_unless_root!();
    const RACES: usize = 5;
    let lab = TestLab::new();
    lab.attach(&[]);
    // A large allowlist makes each change take a while.
    let big = lab.dir().join("big.txt");
    let mut list = bench_v4(0, 20_000);
    list.extend([
        "44.229.228.186/32".to_string(),
        "44.238.177.138/32".to_string(),
    ]);
    write_list(&big, &list);
    sipwall(&lab, &["allow", "replace", "--file", big.to_str().unwrap()]).ok("replace");

    let add_two = |a: &str, b: &str, hold_lock: bool| -> [Run; 2] {
        // Holding the pin root's lock (as another sipwall would) forces
        // both to wait, then race for it.
        let lock = hold_lock.then(|| {
            let f = File::open(lab.bpffs()).unwrap();
            // SAFETY: flock on a file descriptor this test owns.
            assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
            f
        });
        let children = [a, b].map(|cidr| {
            let args = ["allow", "add", cidr];
            let child = sipwall_lab::Lab::sipwall(&lab, &lab.bin, &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (args, child)
        });
        if let Some(lock) = lock {
            // Release only once both block on it.
            let end = Instant::now() + Duration::from_secs(20);
            while !children.iter().all(|(_, c)| waits_for_flock(c.id())) {
                assert!(
                    Instant::now() < end,
                    "the commands never waited for the lock"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(lock);
        }
        children.map(|(args, child)| Run::from_output(&args, child.wait_with_output().unwrap()))
    };

    let mut added = Vec::new();
    let mut waited = 0;
    for race in 0..=RACES {
        let (a, b) = (
            format!("192.0.2.{}", 10 + race),
            format!("198.51.100.{}", 10 + race),
        );
        let held = race == 0;
        let runs = add_two(&a, &b, held);
        for run in &runs {
            run.ok(&format!("race {race}"));
            if run.stderr.contains("waiting for another sipwall command") {
                waited += 1;
            } else {
                assert!(
                    !held,
                    "race {race}: a command did not wait for the lock\n{run}"
                );
            }
        }
        added.extend([format!("{a}/32"), format!("{b}/32")]);
        let now: BTreeSet<String> = lab.allowlist().into_iter().collect();
        for cidr in &added {
            assert!(now.contains(cidr), "race {race}: {cidr} lost");
        }
        assert_eq!(now.len(), list.len() + added.len(), "race {race}");
    }
    assert_eq!(iface_status(&lab), (true, String::new()));
    println!(
        "faults injected: {} pairs of concurrent `allow add` (one held behind the lock); \
         {waited} commands waited for the lock; every change landed",
        RACES + 1
    );
}

#[test]
fn reload_never_applies_a_partial_file() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let config = lab.dir().join("sipwall.toml");
    let full = "[signalling]\n\
                allow = [\"44.229.228.186/32\", \"44.238.177.138/32\", \"198.51.100.7/32\"]\n\
                ports = [5060]\n\
                \n\
                [media]\n\
                rtp_ports = \"40000-41000\"   # narrowed\n\
                \n\
                [policy]\n\
                dry_run = false\n";
    std::fs::write(&config, full).unwrap();
    let log_path = lab.dir().join("run.log");
    let log = File::create(&log_path).unwrap();
    let mut child = spawn(
        &lab,
        &[
            "run",
            "-i",
            IFACE,
            "-c",
            config.to_str().unwrap(),
            "--mode",
            "native",
        ],
        Stdio::from(log),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap();
    // Waits for the `n`th line holding `what` in the service's stderr.
    let wait_line = |what: &str, n: usize| -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let log = read_log();
            if let Some(line) = log.lines().filter(|l| l.contains(what)).nth(n - 1) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < end,
                "no {what:?} #{n} in the service's stderr:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_line("filtering wan0", 1);
    let policy = |lab: &TestLab| {
        let st = status(lab);
        let me = &st["interfaces"][0];
        (
            lab.allowlist(),
            me["signalling_ports"].clone(),
            me["rtp_ports"].clone(),
        )
    };
    let good = policy(&lab);
    assert_eq!(good.0.len(), 3);
    assert_eq!(good.2, "40000-41000");

    let cut_at = |marker: &str| -> Vec<u8> {
        let at = full.find(marker).unwrap_or_else(|| panic!("{marker:?}")) + marker.len();
        full.as_bytes()[..at].to_vec()
    };
    let mut mid_char = b"# caf\xc3".to_vec();
    mid_char.splice(0..0, cut_at("ports = [5060]\n"));
    // (what the file holds when SIGHUP comes, why it must be refused)
    let partial: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty: truncated, nothing written yet"),
        (b"\n  \n".to_vec(), "only blank lines"),
        (cut_at("\"198.51."), "cut mid-line, inside the allow list"),
        (cut_at("rtp_ports = \"400"), "cut mid-line, inside a string"),
        (
            cut_at("[signalling]\n"),
            "cut after the first section header",
        ),
        (cut_at("[media]\n"), "cut after a later section header"),
        (cut_at("[policy]\n"), "cut after the last section header"),
        (cut_at("[med"), "cut inside a section header"),
        (mid_char, "cut inside a multi-byte character"),
    ];
    let mut hups = 0;
    for (bytes, why) in &partial {
        // Written in place, not atomically: what a careless writer does.
        File::create(&config).unwrap().write_all(bytes).unwrap();
        signal(&child, libc::SIGHUP);
        hups += 1;
        let line = wait_line("SIGHUP", hups);
        assert!(line.contains("kept the running policy"), "{why}: {line}");
        assert_eq!(policy(&lab), good, "{why}: the running policy changed");
    }
    // A complete file written atomically is applied.
    let next = full
        .replace(", \"198.51.100.7/32\"", "")
        .replace("41000", "42000");
    let tmp = lab.dir().join("sipwall.toml.tmp");
    std::fs::write(&tmp, &next).unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    signal(&child, libc::SIGHUP);
    hups += 1;
    let line = wait_line("SIGHUP", hups);
    assert!(line.contains("configuration reloaded"), "{line}");
    let now = policy(&lab);
    assert_eq!(
        (now.0.len(), now.2.as_str()),
        (2, Some("40000-42000")),
        "{now:?}"
    );

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "run ended with {status}:\n{}", read_log());
    wait_line("detached from wan0", 1);
    assert_eq!(xdp_prog(&lab, IFACE), None, "run left its program");
    println!(
        "faults injected: {} reloads of a partial configuration file, all refused",
        partial.len()
    );
}

/// `status` reports no filter on the interface and says each of `says`.
fn status_says_unfiltered(lab: &TestLab, says: &[&str]) {
    let (attached, problems) = iface_status(lab);
    assert!(!attached, "status claims a filter: {problems}");
    for says in says {
        assert!(
            problems.contains(says),
            "status should say {says:?}: {problems}"
        );
    }
}

/// `attach` puts the filter back, status is clean, and the allowlist
/// entry added earlier (198.51.100.7) is still there.
fn attach_recovers_keeping_allowlist(lab: &TestLab) {
    let out = lab.attach(&[]);
    assert!(out.contains("attached sipwall to wan0"), "{out}");
    assert_eq!(iface_status(lab), (true, String::new()));
    assert!(lab.allowlist().contains(&"198.51.100.7/32".to_string()));
}
