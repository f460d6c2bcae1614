//! The layers of docs/layout.md as facts the suite checks, so that a change
//! that crosses one fails here rather than in a review: `filter-policy`
//! depends on no aya crate and not on `filter-kernel`, and has no build
//! script (its tests run on stable alone); `filter-kernel` prints nothing;
//! the product binary links neither the lab nor the tests; no `--json`
//! output is built by hand with `json!`. Reads `cargo metadata` and the
//! sources; needs no root.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

/// `cargo metadata`'s entry for the package `name`.
fn package(name: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace())
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "cargo metadata: {out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in the workspace"))
        .clone()
}

/// The names of a package's normal (not dev or build) dependencies.
fn normal_dependencies(package: &serde_json::Value) -> Vec<String> {
    package["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().expect("a name").to_string())
        .collect()
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("reading a source");
                found.push((path, text));
            }
        }
    }
    assert!(!found.is_empty(), "no sources under {}", dir.display());
    found
}

/// The lines of the sources under `dir` (comments left out) that contain
/// any of `needles`, as `path:line: text`.
fn lines_with(dir: &str, needles: &[&str]) -> Vec<String> {
    sources(&workspace().join(dir))
        .into_iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim_start().starts_with("//"))
                .filter(|(_, line)| needles.iter().any(|n| line.contains(n)))
                .map(|(i, line)| format!("{}:{}: {}", path.display(), i + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn filter_policy_is_plain_rust() {
    let policy = package("filter-policy");
    let deps = normal_dependencies(&policy);
    let kernel_side: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("aya") || *d == "filter-kernel")
        .collect();
    assert!(
        kernel_side.is_empty(),
        "filter-policy depends on {kernel_side:?}"
    );
    let build_scripts: Vec<&serde_json::Value> = policy["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "custom-build")
        })
        .collect();
    assert!(
        build_scripts.is_empty(),
        "filter-policy has a build script: {build_scripts:?}"
    );
    // filter-common is the one crate both sides share; without its `user`
    // feature it pulls no aya either.
    let common = policy["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "filter-common")
        .expect("filter-policy uses filter-common");
    assert_eq!(common["features"], serde_json::json!([]), "{common}");
}

#[test]
fn filter_kernel_prints_nothing() {
    let prints = lines_with(
        "filter-kernel/src",
        &["print!(", "println!(", "eprint!(", "eprintln!(", "dbg!("],
    );
    assert!(
        prints.is_empty(),
        "filter-kernel prints (return the text or log it):\n{}",
        prints.join("\n")
    );
}

#[test]
fn the_product_binary_links_no_lab_and_no_tests() {
    let deps = normal_dependencies(&package("filter-user"));
    for crate_name in ["sipwall-lab", "sipwall-tests"] {
        assert!(
            !deps.iter().any(|d| d == crate_name),
            "filter-user depends on {crate_name}: {deps:?}"
        );
    }
}

#[test]
fn json_output_is_typed() {
    let by_hand = lines_with("filter-user/src", &["json!("]);
    assert!(
        by_hand.is_empty(),
        "JSON built by hand (use a serde struct of ops::json):\n{}",
        by_hand.join("\n")
    );
}
