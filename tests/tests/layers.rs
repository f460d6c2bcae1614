//! The layers of docs/layout.md as facts the suite checks, so that a change
//! that crosses one fails here rather than in a review: `filter-policy`
//! depends on no aya crate and not on `filter-kernel`, and has no build
//! script (its tests run on stable alone); `filter-kernel` prints nothing;
//! the product binary links neither the lab nor the tests; no `--json`
//! output is built by hand with `json!`. Reads the manifests and the
//! sources; needs no root.
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

/// The manifest of the workspace's crate in folder `dir` (read as a file,
/// not through cargo, so the suite can run it as `nobody` too).
fn manifest(dir: &str) -> toml::Table {
    let path = workspace().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// The names of a crate's normal (not dev or build) dependencies.
fn normal_dependencies(manifest: &toml::Table) -> Vec<String> {
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|deps| deps.keys().cloned().collect())
        .unwrap_or_default()
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
    let policy = manifest("filter-policy");
    let deps = normal_dependencies(&policy);
    let kernel_side: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("aya") || *d == "filter-kernel")
        .collect();
    assert!(
        kernel_side.is_empty(),
        "filter-policy depends on {kernel_side:?}"
    );
    assert!(
        policy["package"].get("build").is_none()
            && !workspace().join("filter-policy/build.rs").exists(),
        "filter-policy has a build script"
    );
    // filter-common is the one crate both sides share; without its `user`
    // feature it pulls no aya either.
    let common = &policy["dependencies"]["filter-common"];
    assert!(
        common.get("features").is_none(),
        "filter-policy turns on features of filter-common: {common}"
    );
}

#[test]
fn the_call_reader_is_pure() {
    let calls = manifest("calls");
    let deps = normal_dependencies(&calls);
    let kernel_side: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("aya") || d.starts_with("filter-") || d.starts_with("tokio"))
        .collect();
    assert!(
        kernel_side.is_empty(),
        "sipwall-calls depends on {kernel_side:?}"
    );
    assert!(
        !workspace().join("calls/build.rs").exists(),
        "sipwall-calls has a build script"
    );
    // No I/O and no clock: time comes in with each packet.
    let io = lines_with(
        "calls/src",
        &[
            "std::fs",
            "std::net::UdpSocket",
            "TcpStream",
            "Instant::now",
            "SystemTime",
        ],
    );
    assert!(
        io.is_empty(),
        "sipwall-calls does I/O or reads a clock:\n{}",
        io.join("\n")
    );
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
    let deps = normal_dependencies(&manifest("filter-user"));
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
