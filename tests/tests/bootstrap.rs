//! The README's commands install what they need and skip what is there: on
//! a machine where the suite runs, everything is installed, so a second
//! `cargo xtask setup` must find nothing to do (and, above all, not rebuild
//! bpf-linker).
use std::{path::Path, process::Command, time::Instant};

#[test]
fn second_setup_installs_nothing() {
    sipwall_tests::skip_unless_root!();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "setup"])
        .current_dir(workspace)
        .output()
        .expect("running cargo xtask setup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo xtask setup failed: {stderr}");
    let steps: Vec<&str> = stderr.lines().filter(|l| l.starts_with("setup:")).collect();
    assert!(
        steps.is_empty(),
        "setup did work although everything was installed: {steps:?}"
    );
    eprintln!("second setup: nothing to do, {:?}", started.elapsed());
}
