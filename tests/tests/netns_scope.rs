//! An attachment belongs to a network namespace and an interface in it.
//! Two namespaces with same-named interfaces (the lab's PBX and a second
//! one, both with `wan0`), one pin root: every command acts only on its own
//! namespace's attachments, `status` lists the others without judging them,
//! `--netns` reaches another explicitly, and pins of the previous layout
//! are adopted by the namespace they belong to.
use std::process::Command;

use serde_json::Value;
use sipwall_tests::{
    netns::{netns_inode, Host, OtherNetns, TestLab, PBX_IFACE},
    operate::{sipwall, Run},
};

fn in_other(other: &OtherNetns, args: &[&str]) -> Run {
    Run::from_output(args, other.sipwall(args))
}

/// sipwall run from the test's own (the host's) namespace.
fn from_host(lab: &TestLab, args: &[&str]) -> Run {
    let out = Command::new(&lab.bin)
        .arg("--bpffs")
        .arg(lab.bpffs())
        .args(args)
        .output()
        .expect("running sipwall");
    Run::from_output(args, out)
}

fn json(run: &Run, case: &str) -> Value {
    serde_json::from_str(run.ok(case)).unwrap_or_else(|e| panic!("{case}: not JSON ({e})\n{run}"))
}

/// Finding 1a: `status` in another namespace called the PBX's live filter
/// "NOT FILTERING … interface no longer exists".
#[test]
fn status_elsewhere_lists_the_attachment_without_judging_it() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let other = OtherNetns::new(&lab);
    lab.attach(&[]);
    let prog = lab.xdp_prog_id().expect("attached");

    let run = in_other(&other, &["status"]);
    let text = run.ok("status in the other namespace");
    assert!(!text.contains("NOT FILTERING"), "{run}");
    assert!(!text.contains("no longer exists"), "{run}");
    assert!(
        text.contains("not attached to any interface in this network namespace"),
        "{run}"
    );
    let pbx_ino = netns_inode(&lab.ns(Host::Pbx)).to_string();
    assert!(
        text.contains("in another network namespace") && text.contains(&pbx_ino),
        "the PBX's attachment is listed with its namespace\n{run}"
    );
    assert!(
        text.contains(&format!("--netns {}", lab.ns(Host::Pbx))),
        "and how to reach it\n{run}"
    );
    let doc = json(&in_other(&other, &["status", "--json"]), "status --json");
    assert_eq!(doc["interfaces"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["other_netns"][0]["iface"], PBX_IFACE, "{doc}");
    assert_eq!(
        doc["other_netns"][0]["netns_name"],
        lab.ns(Host::Pbx),
        "{doc}"
    );

    // Nothing was removed or changed: the PBX still filters.
    assert_eq!(lab.xdp_prog_id(), Some(prog));
    assert!(lab.pin_dir(PBX_IFACE).join("link").exists());
    let doc = json(&sipwall(&lab, &["status", "--json"]), "status in the PBX");
    assert_eq!(doc["interfaces"][0]["attached"], true, "{doc}");
    assert!(doc.get("other_netns").is_none(), "{doc}");
}

/// Finding 1b: `detach` without `-i` in another namespace removed the
/// PBX's filter.
#[test]
fn detach_elsewhere_leaves_the_filter_alone() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let other = OtherNetns::new(&lab);
    lab.attach(&[]);
    let prog = lab.xdp_prog_id().expect("attached");

    for args in [&["detach"][..], &["detach", "-i", PBX_IFACE]] {
        in_other(&other, args).expect(
            1,
            &[
                "not attached",
                "in this network namespace",
                "other network namespaces",
                "--netns",
            ],
            "detach in the other namespace",
        );
        assert_eq!(lab.xdp_prog_id(), Some(prog), "{args:?} detached the PBX");
        assert!(lab.pin_dir(PBX_IFACE).join("link").exists());
    }
    // Named explicitly, it does reach the PBX.
    let pbx = lab.ns(Host::Pbx);
    in_other(&other, &["--netns", &pbx, "detach"]).ok("detach --netns PBX");
    assert_eq!(lab.xdp_prog_id(), None);
}

/// Finding 1c: `allow add` from the host changed the PBX namespace's
/// allowlist.
#[test]
fn allow_from_another_namespace_needs_netns() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let before = lab.allowlist();

    from_host(&lab, &["allow", "add", "198.51.100.7"]).expect(
        1,
        &["not attached", "in this network namespace", PBX_IFACE],
        "allow add from the host",
    );
    from_host(&lab, &["allow", "add", "-i", PBX_IFACE, "198.51.100.7"]).expect(
        1,
        &["not attached to wan0 in this network namespace"],
        "allow add -i from the host",
    );
    assert_eq!(
        lab.allowlist(),
        before,
        "the host changed the PBX's allowlist"
    );

    let pbx = lab.ns(Host::Pbx);
    from_host(&lab, &["--netns", &pbx, "allow", "add", "198.51.100.7"]).ok("--netns NAME");
    assert!(lab.allowlist().contains(&"198.51.100.7/32".to_string()));
    let path = format!("/run/netns/{pbx}");
    from_host(&lab, &["--netns", &path, "allow", "del", "198.51.100.7"]).ok("--netns PATH");
    assert_eq!(lab.allowlist(), before);
}

/// Finding 1d: `attach -i wan0` on a same-named veth in another namespace
/// took over the PBX's pins; the PBX's interface lost its program.
#[test]
fn attach_to_a_same_named_interface_elsewhere_is_a_second_attachment() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let other = OtherNetns::new(&lab);
    lab.attach(&[]);
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add in the PBX");
    let prog = lab.xdp_prog_id().expect("attached");

    let run = in_other(&other, &["attach", "-i", PBX_IFACE, "--mode", "native"]);
    assert!(run
        .ok("attach in the other namespace")
        .contains("attached sipwall to wan0"));
    let theirs = other.xdp_prog_id().expect("the other wan0 runs a program");
    assert_ne!(theirs, prog);
    assert_eq!(lab.xdp_prog_id(), Some(prog), "the PBX lost its program");
    // Two attachments with their own maps: the PBX's allowlist is its own.
    assert!(lab.allowlist().contains(&"198.51.100.7/32".to_string()));
    let list = json(
        &in_other(&other, &["allow", "list", "--json"]),
        "allow list",
    );
    assert_eq!(
        list["allow"],
        serde_json::json!(["44.229.228.186/32", "44.238.177.138/32"])
    );
    for (run, case) in [
        (sipwall(&lab, &["status", "--json"]), "PBX"),
        (in_other(&other, &["status", "--json"]), "other"),
    ] {
        let doc = json(&run, case);
        assert_eq!(doc["interfaces"][0]["attached"], true, "{case}: {doc}");
        assert_eq!(doc["other_netns"][0]["iface"], PBX_IFACE, "{case}: {doc}");
    }
    in_other(&other, &["detach"]).ok("detach in the other namespace");
    assert_eq!(other.xdp_prog_id(), None);
    assert_eq!(lab.xdp_prog_id(), Some(prog));
    sipwall(&lab, &["status"]).ok("the PBX still filters");
}

/// Pins of layout 3 (`<root>/<iface>/`, INFO version 3) are adopted by the
/// namespace whose interface runs their program, and only by it.
#[test]
fn layout_3_pins_are_adopted_by_their_namespace() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let other = OtherNetns::new(&lab);
    lab.attach(&[]);
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    let prog = lab.xdp_prog_id().expect("attached");
    // Make them what sipwall 0.1 with layout 3 left.
    let new_dir = lab.pin_dir(PBX_IFACE);
    let old_dir = lab.bpffs().join(PBX_IFACE);
    std::fs::rename(&new_dir, &old_dir).expect("moving the pins back to layout 3");
    let _ = std::fs::remove_dir(new_dir.parent().unwrap());
    set_info_version(&old_dir, 3);

    // The other namespace's wan0 does not run that program: left alone,
    // and listed.
    let run = in_other(&other, &["status"]);
    assert!(
        run.ok("status elsewhere").contains("previous layout"),
        "{run}"
    );
    assert!(
        old_dir.join("link").exists(),
        "adopted by the wrong namespace"
    );
    in_other(&other, &["detach"]).expect(1, &["not attached"], "detach elsewhere");
    assert_eq!(lab.xdp_prog_id(), Some(prog));

    // The PBX's first command adopts them: moved, upgraded, still filtering.
    let run = sipwall(&lab, &["status", "--json"]);
    assert!(run.stderr.contains("adopted the pins of wan0"), "{run}");
    let doc = json(&run, "status in the PBX");
    assert_eq!(doc["interfaces"][0]["attached"], true, "{doc}");
    assert_eq!(doc["interfaces"][0]["program_id"], prog, "{doc}");
    assert!(!old_dir.exists() && new_dir.join("link").exists());
    assert_eq!(info_version(&new_dir), 4);
    // Layouts 5 and 6 (abuse controls, strict mode) changed the maps: moved pins of layout 4 are
    // refused rather than misread, saying what to do, and the filter they
    // hold keeps running until then.
    sipwall(&lab, &["allow", "list", "--json"]).expect(
        1,
        &["incompatible sipwall version (layout 4", "sipwall detach"],
        "maps of layout 3 under a later layout",
    );
    assert_eq!(lab.xdp_prog_id(), Some(prog));
}

fn info_map(
    dir: &std::path::Path,
) -> aya::maps::Array<aya::maps::MapData, filter_common::AttachInfo> {
    let data = aya::maps::MapData::from_pin(dir.join("INFO")).expect("INFO pin");
    aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("INFO is an array")
}

fn info_version(dir: &std::path::Path) -> u32 {
    info_map(dir).get(&0, 0).expect("INFO[0]").layout_version
}

fn set_info_version(dir: &std::path::Path, version: u32) {
    let mut map = info_map(dir);
    let mut info = map.get(&0, 0).expect("INFO[0]");
    info.layout_version = version;
    map.set(0, info, 0).expect("writing INFO");
}
