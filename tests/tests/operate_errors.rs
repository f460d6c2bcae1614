//! Every way the operator commands refuse, through the real binary: the
//! message, the exit status, and that the running filter is exactly as it
//! was before (allowlist, status, counters, the program on the interface).
//! Damaged pins, pins of another version and a foreign XDP program are made
//! for real on a lab's private bpffs and interfaces.
use std::path::PathBuf;

use filter_common::{AttachInfo, PIN_LAYOUT_VERSION};
use serde_json::Value;
use sipwall_tests::{
    netns::{TestLab, PBX_IFACE, PROVIDER},
    operate::{
        add_veth, pin_foreign_xdp, sipwall, sipwall_unprivileged, snapshot, write_list, xdp_prog,
        xdp_prog_after_release, xdp_prog_name, Run,
    },
};

const IFACE: &str = PBX_IFACE;
/// A second interface in the PBX, made by the tests that need it.
const IFACE2: &str = "wan1";

fn pin_dir(lab: &TestLab, iface: &str) -> PathBuf {
    lab.pin_dir(iface)
}

fn json(run: &Run, case: &str) -> Value {
    serde_json::from_str(run.ok(case)).unwrap_or_else(|e| panic!("{case}: not JSON ({e})\n{run}"))
}

fn allowlist(lab: &TestLab) -> Vec<String> {
    lab.allowlist()
}

/// The status of `iface` from `status --json`.
fn status_of(lab: &TestLab, iface: &str) -> Value {
    let all = sipwall_tests::operate::status_json(lab);
    all["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["iface"] == iface))
        .cloned()
        .unwrap_or_else(|| panic!("status --json does not list {iface}: {all}"))
}

fn problems(status: &Value) -> String {
    status["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Runs each row, checks its exit status and message, and that nothing
/// changed on `iface`.
fn refuse_all(lab: &TestLab, iface: &str, rows: &[(&[&str], i32, &[&str], &str)]) {
    let before = snapshot(lab, iface);
    for (args, code, words, why) in rows {
        sipwall(lab, args).expect(*code, words, why);
        assert_eq!(
            snapshot(lab, iface),
            before,
            "{why}: `sipwall {args:?}` changed the running filter"
        );
    }
}

#[test]
fn without_root_every_command_says_so_in_one_line() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let before = snapshot(&lab, IFACE);
    // Files an unprivileged user can read, so that nothing but the missing
    // privileges can stop the command.
    let pcap = lab.dir().join("empty.pcap");
    let header = [
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];
    std::fs::write(&pcap, header).unwrap();
    let list = lab.dir().join("list.txt");
    write_list(&list, &["198.51.100.7/32".to_string()]);
    let config = lab.dir().join("sipwall.toml");
    std::fs::write(&config, "[policy]\ndry_run = true\n").unwrap();
    let (pcap, list, config) = (
        pcap.to_str().unwrap(),
        list.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let provider = format!("{}", PROVIDER[0]);
    let commands: &[&[&str]] = &[
        &["status"],
        &["status", "-i", IFACE, "--json"],
        &["stats"],
        &["stats", "--watch", "1"],
        &["top", "-n", "5"],
        &["allow", "list"],
        &["allow", "add", "198.51.100.7"],
        &["allow", "del", &provider],
        &["allow", "replace", "--file", list],
        &["attach", "-i", IFACE],
        &["attach", "-i", IFACE, "-c", config, "--mode", "skb"],
        &["detach", "-i", IFACE],
        &["run", "-i", IFACE, "-c", config],
        &["check", "--pcap", pcap],
    ];
    for args in commands {
        let run = sipwall_unprivileged(&lab, args);
        run.expect(1, &["needs root"], &format!("unprivileged {args:?}"));
        assert_eq!(
            run.stderr.trim_end().lines().count(),
            1,
            "unprivileged {args:?}: the refusal is one line\n{run}"
        );
        assert!(
            run.stdout.is_empty(),
            "unprivileged {args:?}: printed before refusing\n{run}"
        );
    }
    assert_eq!(
        snapshot(&lab, IFACE),
        before,
        "an unprivileged run changed the filter"
    );
    println!("unprivileged commands refused: {}", commands.len());
}

#[test]
fn nothing_attached_is_said_plainly() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let list = lab.dir().join("list.txt");
    write_list(&list, &["198.51.100.7/32".to_string()]);
    let list = list.to_str().unwrap();
    let none = "not attached to any interface";
    let rows: &[(&[&str], i32, &[&str], &str)] = &[
        (
            &["status", "-i", IFACE],
            1,
            &["not attached to wan0"],
            "status of an interface without sipwall",
        ),
        (&["stats"], 1, &[none], "no counters to show"),
        (
            &["stats", "--json"],
            1,
            &[none],
            "no counters to show, JSON asked",
        ),
        (
            &["stats", "-i", IFACE],
            1,
            &["not attached to wan0"],
            "no counters on wan0",
        ),
        (&["top"], 1, &[none], "no denied sources to show"),
        (&["allow", "list"], 1, &[none], "no allowlist to show"),
        (
            &["allow", "list", "-i", IFACE],
            1,
            &["not attached to wan0", "sipwall attach -i wan0"],
            "no allowlist on wan0",
        ),
        (
            &["allow", "add", "198.51.100.7"],
            1,
            &[none],
            "nothing to add to",
        ),
        (
            &["allow", "del", "44.229.228.186"],
            1,
            &[none],
            "nothing to delete from",
        ),
        (
            &["allow", "replace", "--file", list],
            1,
            &[none],
            "nothing to replace",
        ),
        (&["detach"], 1, &[none], "nothing to detach"),
        (
            &["detach", "-i", IFACE],
            1,
            &["not attached to wan0"],
            "nothing to detach on wan0",
        ),
        (
            &["attach", "-i", "nosuch0"],
            1,
            &["nosuch0 does not exist"],
            "missing interface",
        ),
        (
            &["run", "-i", "nosuch0"],
            1,
            &["nosuch0 does not exist"],
            "service on a missing interface",
        ),
        (
            &["allow", "list", "-i", "nosuch0"],
            1,
            &["not attached to nosuch0"],
            "missing interface, allowlist",
        ),
    ];
    for (args, code, words, why) in rows {
        let run = sipwall(&lab, args);
        run.expect(*code, words, why);
        assert!(
            run.stderr.trim_end().lines().count() == 1,
            "{why}: one line\n{run}"
        );
    }
    // `status` reports, it does not fail: nothing attached is an answer.
    let run = sipwall(&lab, &["status"]);
    assert!(run.ok("status").contains(none), "status:\n{run}");
    let run = sipwall(&lab, &["status", "--json"]);
    assert_eq!(
        json(&run, "status --json"),
        serde_json::json!({"interfaces": []})
    );
    // Nothing was made on the way.
    let ns_dir = pin_dir(&lab, IFACE).parent().unwrap().to_path_buf();
    let left: Vec<String> = [lab.bpffs(), ns_dir]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == IFACE || n == "nosuch0")
        .collect();
    assert!(left.is_empty(), "pins made by refused commands: {left:?}");
    assert_eq!(xdp_prog(&lab, IFACE), None, "a refused command attached");
    println!("nothing-attached refusals: {}", rows.len());
}

#[test]
fn refusals_leave_the_running_filter_alone() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    add_veth(&lab, IFACE2);
    let list = lab.dir().join("list.txt");
    write_list(&list, &["198.51.100.9/32".to_string()]);
    let list = list.to_str().unwrap();
    let everyone = lab.dir().join("everyone.txt");
    write_list(
        &everyone,
        &["44.229.228.186/32".to_string(), "::/0".to_string()],
    );
    let everyone = everyone.to_str().unwrap();
    // A configuration whose allowlist is two halves of every IPv4 source.
    let open_config = lab.dir().join("open.toml");
    std::fs::write(
        &open_config,
        "[signalling]\nallow = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n",
    )
    .unwrap();
    let open_config = open_config.to_str().unwrap();

    let rows: &[(&[&str], i32, &[&str], &str)] = &[
        (
            &["allow", "add", "-i", IFACE, "0.0.0.0/0"],
            2,
            &["0.0.0.0/0", "every IPv4 source", "--force"],
            "allowing every IPv4 source needs --force",
        ),
        (
            &["allow", "add", "-i", IFACE, "0.0.0.0/1", "128.0.0.0/1"],
            2,
            &["together", "0.0.0.0/0", "every IPv4 source", "--force"],
            "two halves that make every IPv4 source need --force",
        ),
        (
            &["allow", "add", "-i", IFACE, "192.0.2.9", "::/0"],
            2,
            &["::/0", "every IPv6 source", "--force"],
            "allowing every IPv6 source needs --force",
        ),
        (
            &["allow", "replace", "-i", IFACE, "--file", everyone],
            2,
            &["::/0", "--force"],
            "a file allowing every IPv6 source needs --force",
        ),
        (
            &["attach", "-i", IFACE, "-c", open_config],
            2,
            &["covers 0.0.0.0/0", "every IPv4 source", "--force"],
            "a configuration allowing every IPv4 source needs --force",
        ),
        (
            &["run", "-i", IFACE, "-c", open_config],
            2,
            &["covers 0.0.0.0/0", "every IPv4 source", "--force"],
            "run refuses it at start the same way",
        ),
        (
            &["attach", "-i", IFACE, "--mode", "skb"],
            2,
            &["native mode", "sipwall detach -i wan0"],
            "changing the mode needs a detach",
        ),
        (
            &["attach", "-i", IFACE, "--mode", "hw"],
            2,
            &["native mode", "sipwall detach -i wan0"],
            "changing the mode needs a detach",
        ),
        (
            &["attach", "-i", IFACE2, "--mode", "hw"],
            1,
            &["wan1", "hw mode", "--mode skb"],
            "veth cannot offload: suggest skb",
        ),
        (
            &["attach", "-i", "nosuch0"],
            1,
            &["nosuch0 does not exist"],
            "missing interface",
        ),
        (
            &["status", "-i", IFACE2],
            1,
            &["not attached to wan1"],
            "wan1 has no sipwall",
        ),
        (
            &["allow", "list", "-i", IFACE2],
            1,
            &["not attached to wan1"],
            "wan1 has no allowlist",
        ),
        (
            &["detach", "-i", IFACE2],
            1,
            &["not attached to wan1"],
            "nothing to detach on wan1",
        ),
        (
            &["top", "-i", IFACE2],
            1,
            &["not attached to wan1"],
            "wan1 has no counters",
        ),
    ];
    refuse_all(&lab, IFACE, rows);
    // The refused hw attach left nothing on wan1.
    assert_eq!(xdp_prog(&lab, IFACE2), None, "hw attach left a program");
    assert!(
        !pin_dir(&lab, IFACE2).exists(),
        "hw attach left pins behind"
    );

    // Several attached: commands about one interface need -i.
    sipwall(&lab, &["attach", "-i", IFACE2, "--mode", "skb"]).ok("attach wan1");
    let several: &[&str] = &["several interfaces", "wan0, wan1", "-i"];
    let rows: &[(&[&str], i32, &[&str], &str)] = &[
        (&["allow", "list"], 2, several, "which allowlist?"),
        (&["allow", "add", "192.0.2.9"], 2, several, "add to which?"),
        (
            &["allow", "del", "198.51.100.7"],
            2,
            several,
            "delete from which?",
        ),
        (
            &["allow", "replace", "--file", list],
            2,
            several,
            "replace which?",
        ),
        (&["top"], 2, several, "whose denied sources?"),
        (&["detach"], 2, several, "detach which?"),
    ];
    refuse_all(&lab, IFACE, rows);
    let wan1 = xdp_prog(&lab, IFACE2);
    assert!(wan1.is_some(), "wan1 lost its program");
    // Status and stats show every interface instead.
    let status = json(&sipwall(&lab, &["status", "--json"]), "status --json");
    let attached: Vec<(&str, bool)> = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["iface"].as_str().unwrap(), s["attached"] == true))
        .collect();
    assert_eq!(attached, [(IFACE, true), (IFACE2, true)], "{status}");
    let stats = json(&sipwall(&lab, &["stats", "--json"]), "stats --json");
    assert_eq!(
        stats["interfaces"].as_array().map(Vec::len),
        Some(2),
        "{stats}"
    );
    sipwall(&lab, &["detach", "-i", IFACE2]).ok("detach wan1");
    assert_eq!(xdp_prog(&lab, IFACE2), None, "detach left wan1's program");
    assert!(allowlist(&lab).contains(&"198.51.100.7/32".to_string()));
    sipwall(&lab, &["allow", "add", "-i", IFACE, "0.0.0.0/0", "--force"])
        .ok("allow add /0 --force");
    assert!(allowlist(&lab).contains(&"0.0.0.0/0".to_string()));
}

#[test]
fn damaged_pins_are_reported_and_repaired() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let dir = pin_dir(&lab, IFACE);
    let defaults = vec![
        "44.229.228.186/32".to_string(),
        "44.238.177.138/32".to_string(),
    ];

    // 1. The allowlist maps removed by hand. The program keeps its maps, so
    // it still filters; commands that need them say the pins are damaged.
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    let prog = xdp_prog(&lab, IFACE);
    for map in ["ALLOW_V4_0", "ALLOW_V4_1"] {
        std::fs::remove_file(dir.join(map)).unwrap();
    }
    for (args, why) in [
        (&["allow", "list"][..], "allowlist unreadable"),
        (&["allow", "add", "192.0.2.9"], "allowlist unwritable"),
        (&["stats"], "maps incomplete"),
        (&["top"], "maps incomplete"),
    ] {
        sipwall(&lab, args).expect(1, &["ALLOW_V4_0", "damaged", "attaching again"], why);
    }
    let st = status_of(&lab, IFACE);
    assert_eq!(st["attached"], true, "the program still runs: {st}");
    assert!(
        problems(&st).contains("damaged"),
        "status hides the damage: {st}"
    );
    assert_eq!(xdp_prog(&lab, IFACE), prog);
    // attach repairs: the lost allowlist cannot be kept, so the
    // configuration's (here the defaults) is installed — never an empty one.
    let run = sipwall(&lab, &["attach", "-i", IFACE, "--mode", "native"]);
    run.expect(
        0,
        &["incomplete", "ALLOW_V4_0", "configuration's is installed"],
        "repair",
    );
    assert!(
        run.stdout
            .contains("allowlist installed from the configuration"),
        "{run}"
    );
    assert_eq!(
        allowlist(&lab),
        defaults,
        "repair installed the wrong allowlist"
    );
    let st = status_of(&lab, IFACE);
    assert_eq!(
        (st["attached"].clone(), problems(&st)),
        (Value::Bool(true), String::new()),
        "{st}"
    );

    // 2. The INFO map removed by hand: still attached (status says so), the
    // interface can still be named, and attach rewrites INFO keeping the
    // allowlist.
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    std::fs::remove_file(dir.join("INFO")).unwrap();
    let st = status_of(&lab, IFACE);
    assert_eq!(st["attached"], true, "INFO gone, program running: {st}");
    assert!(problems(&st).contains("INFO"), "{st}");
    for args in [
        &["allow", "list", "-i", IFACE][..],
        &["allow", "list"],
        &["stats", "-i", IFACE],
    ] {
        sipwall(&lab, args).expect(1, &["INFO", "damaged"], "INFO missing");
    }
    let run = sipwall(&lab, &["attach", "-i", IFACE, "--mode", "native"]);
    assert!(
        run.ok("repair INFO")
            .contains("allowlist and counters kept"),
        "{run}"
    );
    assert!(
        allowlist(&lab).contains(&"198.51.100.7/32".to_string()),
        "allowlist lost"
    );
    assert_eq!(problems(&status_of(&lab, IFACE)), "");

    // 3. Pins from an incompatible version, and pins that are not sipwall's:
    // refused by every command that would read them, reported by status,
    // removed by detach.
    let info = filter_kernel::pins::read_info(&dir).unwrap();
    let cases = [
        (
            AttachInfo {
                layout_version: PIN_LAYOUT_VERSION + 1,
                ..info
            },
            &["incompatible sipwall version", "detach"][..],
        ),
        (
            AttachInfo {
                magic: 0x1234_5678,
                ..info
            },
            &["not sipwall's"][..],
        ),
    ];
    for (bad, words) in cases {
        filter_kernel::pins::write_info(&dir, &bad).unwrap();
        let ruleset = filter_kernel::maps::Maps::open_pinned(&dir)
            .unwrap()
            .read_ruleset()
            .unwrap();
        let prog = xdp_prog(&lab, IFACE);
        for args in [
            &["allow", "list"][..],
            &["allow", "add", "192.0.2.9"],
            &["allow", "del", "198.51.100.7"],
            &["stats"],
            &["top"],
            &["attach", "-i", IFACE, "--mode", "native"],
        ] {
            sipwall(&lab, args).expect(1, words, &format!("bad INFO {bad:?}, {args:?}"));
        }
        let st = status_of(&lab, IFACE);
        assert!(problems(&st).contains(words[0]), "{st}");
        assert_eq!(st["attached"], true, "the program still runs: {st}");
        assert_eq!(
            xdp_prog(&lab, IFACE),
            prog,
            "a refused command touched the interface"
        );
        let after = filter_kernel::maps::Maps::open_pinned(&dir)
            .unwrap()
            .read_ruleset()
            .unwrap();
        assert_eq!(after, ruleset, "a refused command changed the maps");
        filter_kernel::pins::write_info(&dir, &info).unwrap();
    }
    filter_kernel::pins::write_info(
        &dir,
        &AttachInfo {
            layout_version: PIN_LAYOUT_VERSION + 1,
            ..info
        },
    )
    .unwrap();
    sipwall(&lab, &["detach", "-i", IFACE]).ok("detach incompatible pins");
    assert_eq!(xdp_prog(&lab, IFACE), None, "detach left the program");
    assert!(!dir.exists(), "detach left pins");
    lab.attach(&[]);
    assert_eq!(allowlist(&lab), defaults);
}

/// A sipwall program attached with another `--bpffs` was called "not
/// sipwall's", with no word of the other pin root.
#[test]
fn sipwall_under_another_pin_root_is_named_with_its_root() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let other_root = lab.bpffs().join("elsewhere");
    let other = other_root.to_str().unwrap();
    // sipwall in the PBX with a pin root of its own choosing.
    let with_root = |args: &[&str]| -> Run {
        let out = lab
            .command(sipwall_tests::netns::Host::Pbx, &lab.bin)
            .args(args)
            .output()
            .unwrap();
        Run::from_output(args, out)
    };
    with_root(&["--bpffs", other, "attach", "-i", IFACE, "--mode", "skb"])
        .ok("attach under the other root");
    let prog = xdp_prog(&lab, IFACE).expect("attached");
    let hint = format!("sipwall --bpffs {other} detach -i {IFACE}");
    for args in [&["attach", "-i", IFACE][..], &["run", "-i", IFACE]] {
        sipwall(&lab, args).expect(
            1,
            &["another pin root", other, "skb mode", &hint],
            &format!("{args:?} over sipwall under another root"),
        );
        assert!(!sipwall(&lab, args).stderr.contains("not sipwall's"));
        assert_eq!(xdp_prog(&lab, IFACE), Some(prog));
    }
    // The hint works.
    let (first, rest) = hint.split_once(' ').unwrap();
    assert_eq!(first, "sipwall");
    let args: Vec<&str> = rest.split(' ').collect();
    with_root(&args).ok("the hinted detach");
    assert_eq!(xdp_prog_after_release(&lab, IFACE), None);
}

#[test]
fn a_foreign_xdp_program_is_never_replaced() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let pin = lab.bpffs().join("foreign-xdp");
    pin_foreign_xdp(&pin, "foreign_pass");
    for (mode, flag) in [("native", "xdpdrv"), ("skb", "xdpgeneric")] {
        let pin = pin.to_str().unwrap();
        lab.exec(
            sipwall_tests::netns::Host::Pbx,
            &["ip", "link", "set", "dev", IFACE, flag, "pinned", pin],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let foreign = xdp_prog(&lab, IFACE).expect("foreign program attached");
        assert_eq!(xdp_prog_name(&lab, IFACE).as_deref(), Some("foreign_pass"));
        let id = format!("program id {foreign}");
        for sipwall_mode in ["auto", "native", "skb"] {
            let args = ["attach", "-i", IFACE, "--mode", sipwall_mode];
            sipwall(&lab, &args).expect(
                1,
                &[
                    "not sipwall's",
                    &id,
                    "foreign_pass",
                    &format!("{mode} mode"),
                    "will not replace",
                    // The command for the mode found; run below to remove it.
                    &format!("`ip link set dev {IFACE} {flag} off`"),
                ],
                &format!("foreign program in {mode} mode, sipwall {args:?}"),
            );
            assert_eq!(
                xdp_prog(&lab, IFACE),
                Some(foreign),
                "the foreign program was replaced"
            );
            assert!(!pin_dir(&lab, IFACE).exists(), "a refused attach left pins");
        }
        // `run` refuses the same way, before serving anything.
        sipwall(&lab, &["run", "-i", IFACE]).expect(
            1,
            &["not sipwall's", "foreign_pass"],
            "run over a foreign program",
        );
        assert_eq!(xdp_prog(&lab, IFACE), Some(foreign));
        let run = sipwall(&lab, &["status"]);
        assert!(
            run.ok("status").contains("not attached to any interface"),
            "{run}"
        );
        lab.exec(
            sipwall_tests::netns::Host::Pbx,
            &["ip", "link", "set", "dev", IFACE, flag, "off"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    // Once it is gone, sipwall attaches.
    lab.attach(&[]);
    assert_eq!(xdp_prog_name(&lab, IFACE).as_deref(), Some("sipwall"));
    std::fs::remove_file(&pin).unwrap();
}
