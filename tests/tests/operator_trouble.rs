//! What an operator sees when something is wrong, through the real binary:
//! exit statuses a monitoring script can rely on, warnings on stale
//! attachments, and the small things that mislead (issue 12, findings 7
//! and 9).
use std::process::Command;

use serde_json::Value;
use sipwall_tests::{
    netns::{Host, TestLab, PBX_IFACE},
    operate::{add_veth, sipwall, Run},
};

const GONE: &str = "wan1";

/// Finding 7: `status` exited 0 while it reported NOT FILTERING; `stats`
/// on a deleted interface showed its counters without a word; `allow add`
/// to a deleted interface succeeded.
#[test]
fn trouble_shows_in_exit_statuses_and_warnings() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    add_veth(&lab, GONE);
    sipwall(&lab, &["attach", "-i", GONE, "--mode", "skb"]).ok("attach wan1");
    let run = sipwall(&lab, &["status"]);
    assert_eq!(run.code, Some(0), "all filtering\n{run}");
    let healthy_json = sipwall(&lab, &["status", "--json"]);
    assert_eq!(healthy_json.code, Some(0));

    lab.exec(Host::Pbx, &["ip", "link", "del", GONE]).unwrap();

    // status: the same report, exit 1, and one line saying which.
    let run = sipwall(&lab, &["status"]);
    run.expect(1, &["NOT filtering on wan1"], "status with wan1 gone");
    assert!(run.stdout.contains("wan1: NOT FILTERING"), "{run}");
    assert!(run.stdout.contains("wan0: filtering"), "{run}");
    let run = sipwall(&lab, &["status", "--json"]);
    assert_eq!(run.code, Some(1), "status --json with wan1 gone\n{run}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("still JSON on stdout");
    let old: Value = serde_json::from_str(&healthy_json.stdout).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&doc), keys(&old), "the JSON keeps its shape");
    assert_eq!(keys(&doc["interfaces"][1]), keys(&old["interfaces"][1]));
    assert_eq!(doc["interfaces"][1]["attached"], false);
    // Only the healthy one in scope: exit 0.
    sipwall(&lab, &["status", "-i", PBX_IFACE]).ok("status -i wan0");
    sipwall(&lab, &["status", "-i", GONE]).expect(1, &["NOT filtering"], "status -i wan1");

    // stats, top, allow list: the figures, with a warning.
    for args in [
        &["stats", "-i", GONE][..],
        &["stats", "-i", GONE, "--json"],
        &["top", "-i", GONE],
        &["allow", "list", "-i", GONE],
    ] {
        let run = sipwall(&lab, args);
        run.ok(&format!("{args:?}"));
        assert!(
            run.stderr.contains("warning: wan1 is NOT filtering")
                && run.stderr.contains("no longer exists"),
            "{args:?} warns\n{run}"
        );
    }
    let run = sipwall(&lab, &["stats"]);
    assert!(run.stderr.contains("warning: wan1"), "{run}");
    assert!(!run.stderr.contains("warning: wan0"), "{run}");
    let run = sipwall(&lab, &["stats", "-i", PBX_IFACE]);
    assert!(run.stderr.is_empty(), "no warning for a healthy one\n{run}");

    // allow: refused without --force, nothing changed.
    let before = lab_allow(&lab, GONE);
    let list = lab.dir().join("list.txt");
    std::fs::write(&list, "198.51.100.0/24\n").unwrap();
    let list = list.to_str().unwrap();
    for args in [
        &["allow", "add", "-i", GONE, "198.51.100.7"][..],
        &["allow", "del", "-i", GONE, "44.229.228.186"],
        &["allow", "replace", "-i", GONE, "--file", list],
    ] {
        sipwall(&lab, args).expect(
            2,
            &[
                "wan1",
                "NOT filtering",
                "no longer exists",
                "--force",
                "nothing changed",
            ],
            &format!("{args:?} to a dead attachment"),
        );
        assert_eq!(lab_allow(&lab, GONE), before);
    }
    let run = sipwall(
        &lab,
        &["allow", "add", "-i", GONE, "--force", "198.51.100.7"],
    );
    run.ok("allow add --force");
    assert!(
        run.stderr.contains("warning: wan1 is NOT filtering"),
        "{run}"
    );
    assert!(lab_allow(&lab, GONE).contains(&"198.51.100.7/32".to_string()));
}

fn lab_allow(lab: &TestLab, iface: &str) -> Vec<String> {
    let run = sipwall(lab, &["allow", "list", "-i", iface, "--json"]);
    let doc: Value = serde_json::from_str(run.ok("allow list --json")).unwrap();
    doc["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Finding 9, on a running filter: `/032`, re-adding, an empty list, the
/// doubled "sipwall: sipwall", TOML errors and root without capabilities.
#[test]
fn small_things_that_mislead() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    add_veth(&lab, "wan1");
    sipwall(&lab, &["attach", "-i", "wan1", "--mode", "skb"]).ok("attach wan1");

    // A prefix length with a leading zero is not canonical.
    sipwall(&lab, &["allow", "add", "-i", PBX_IFACE, "198.51.100.7/032"]).expect(
        2,
        &["198.51.100.7/032", "canonical", "198.51.100.7/32"],
        "/032",
    );
    // Re-adding says so.
    sipwall(&lab, &["allow", "add", "-i", PBX_IFACE, "198.51.100.7"]).ok("add");
    let run = sipwall(
        &lab,
        &[
            "allow",
            "add",
            "-i",
            PBX_IFACE,
            "198.51.100.7",
            "198.51.100.8",
        ],
    );
    run.ok("re-add one, add another");
    assert!(
        run.stderr.contains("198.51.100.7/32 is already present"),
        "{run}"
    );
    assert!(run.stdout.contains("now has 4 entries"), "{run}");
    let run = sipwall(&lab, &["allow", "add", "-i", PBX_IFACE, "198.51.100.8"]);
    assert!(
        run.ok("re-add").contains("nothing changed") && run.stderr.contains("already present"),
        "{run}"
    );
    // An empty allowlist is said, in text; the JSON stays the same.
    let empty = lab.dir().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let empty = empty.to_str().unwrap();
    sipwall(
        &lab,
        &[
            "allow", "replace", "-i", PBX_IFACE, "--file", empty, "--force",
        ],
    )
    .ok("empty");
    let run = sipwall(&lab, &["allow", "list", "-i", PBX_IFACE]);
    assert!(
        run.ok("allow list")
            .contains("the allowlist of wan0 is empty"),
        "{run}"
    );
    let run = sipwall(&lab, &["allow", "list", "-i", PBX_IFACE, "--json"]);
    assert_eq!(run.ok("allow list --json").trim(), r#"{"allow":[]}"#);

    // `allow replace --file -` reads standard input (FIFOs are refused, so
    // this is how a pipe gets in).
    let args = ["allow", "replace", "-i", PBX_IFACE, "--file", "-"];
    let mut child = lab
        .sipwall_command(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"44.229.228.186\n44.238.177.138/32 # both\n",
    )
    .unwrap();
    let run = Run::from_output(&args, child.wait_with_output().unwrap());
    assert!(
        run.ok("replace from stdin").contains("now has 2 entries"),
        "{run}"
    );
    assert_eq!(lab.allowlist(), ["44.229.228.186/32", "44.238.177.138/32"]);

    // Value errors in valid TOML are not called "TOML parse error"; syntax
    // errors are called invalid TOML. Both name line and column.
    let config = |name: &str, text: &str| -> String {
        let p = lab.dir().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    for (file, says, not) in [
        (
            config("port0.toml", "[signalling]\nports = [0]\n"),
            "line 2, column 9: port 0",
            "TOML",
        ),
        (
            config("key.toml", "[policy]\ndryrun = true\n"),
            "line 2, column 1: unknown field",
            "TOML",
        ),
        (
            config("syntax.toml", "[signalling\n"),
            "line 1, column 12: invalid TOML",
            "TOML parse error",
        ),
    ] {
        let run = sipwall(&lab, &["attach", "-i", PBX_IFACE, "-c", &file]);
        run.expect(2, &[says], &file);
        assert!(!run.stderr.contains(not), "{file}\n{run}");
    }

    // No message starts "sipwall: sipwall".
    let several = sipwall(&lab, &["detach"]);
    several.expect(2, &["several interfaces"], "detach which?");
    let unprivileged = sipwall_tests::operate::sipwall_unprivileged(&lab, &["status"]);
    unprivileged.expect(1, &["needs root", "sudo"], "as nobody");
    for run in [&several, &unprivileged] {
        assert!(!run.stderr.contains("sipwall: sipwall"), "{run}");
    }

    // Root without the capabilities: say which, not "use sudo".
    let out = lab
        .command(Host::Pbx, "setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(&lab.bin)
        .arg("--bpffs")
        .arg(lab.bpffs())
        .arg("status")
        .output()
        .unwrap();
    let run = Run::from_output(&["status"], out);
    run.expect(
        1,
        &["running as root", "CAP_BPF", "CAP_NET_ADMIN"],
        "root without caps",
    );
    assert!(!run.stderr.contains("sudo"), "{run}");
}

/// Finding 9: `check --help` and several flags had no help text. Every
/// option of every command has some (`-h`: the flag and its help on one
/// line).
#[test]
fn every_command_and_flag_has_help() {
    let bin = sipwall_tests::netns::sipwall_bin();
    let commands: &[&[&str]] = &[
        &[],
        &["attach"],
        &["detach"],
        &["status"],
        &["allow"],
        &["allow", "list"],
        &["allow", "add"],
        &["allow", "del"],
        &["allow", "replace"],
        &["stats"],
        &["top"],
        &["check"],
        &["run"],
        &["confirm"],
        &["ban"],
        &["ban", "add"],
        &["ban", "del"],
        &["ban", "list"],
        &["pinhole"],
        &["pinhole", "list"],
        &["pinhole", "add"],
        &["pinhole", "del"],
        &["doctor"],
    ];
    for cmd in commands {
        let out = Command::new(&bin).args(*cmd).arg("-h").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?} -h\n{text}");
        let about = text.lines().next().unwrap_or("");
        assert!(
            !about.trim().is_empty() && !about.starts_with("Usage"),
            "{cmd:?}: no about\n{text}"
        );
        let mut in_options = false;
        for line in text.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_options = line == "Options:" || line == "Commands:";
                continue;
            }
            if !in_options || line.trim().is_empty() {
                continue;
            }
            // "  -i, --iface <IFACE>  help" / "  attach  help": the help
            // text follows a gap of two spaces or more after the name.
            let body = line.trim_start();
            assert!(
                body.split_once("  ")
                    .is_some_and(|(_, help)| !help.trim().is_empty()),
                "{cmd:?}: {body:?} has no help\n{text}"
            );
        }
    }
}
