//! What must hold before the tests are worth running, and the suite once
//! more as a contributor without root runs it.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, cargo_cmd, run, target_dir};

/// Formatting, and clippy with `-D warnings` on every crate: the user
/// crates and the eBPF crate on the host, and the eBPF crate again on its
/// own target (where `target_arch = "bpf"` code is compiled).
pub fn all() -> Result<()> {
    eprintln!("gates: cargo fmt --check");
    cargo(&["fmt", "--all", "--", "--check"])
        .context("formatting differs from rustfmt's (the diff is above): run `cargo fmt --all`")?;
    eprintln!("gates: clippy on the workspace");
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
    .context("clippy found problems (above)")?;
    eprintln!("gates: clippy on the eBPF crate for bpfel-unknown-none");
    let ebpf_target = target_dir().join("ebpf-clippy");
    run(Command::new("cargo")
        .args(["+nightly", "clippy", "-p", "filter-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&ebpf_target)
        .args(["--", "-D", "warnings"])
        .current_dir(crate::workspace_root())
        .env("PATH", crate::setup::path_with_cargo_bin()))
    .context("clippy found problems in the eBPF crate (above)")
}

/// Builds every binary, failing when a build script relays lines as
/// cargo warnings: the eBPF build's progress used to arrive that way,
/// forty `warning: filter-kernel@…: Compiling …` lines a build
/// (filter-kernel/build.rs now shows them only when that build fails).
/// Checked whenever the build script runs, as on every fresh machine.
pub fn build_without_relayed_warnings() -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut cmd = cargo_cmd(&["build", "--bins"]);
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let mut relayed = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading cargo's output")?;
        eprintln!("{line}");
        if line.starts_with("warning: filter-kernel@") {
            relayed += 1;
        }
    }
    let status = child.wait().context("waiting for cargo build")?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    if relayed > 0 {
        bail!(
            "the build printed {relayed} warnings relayed by filter-kernel's build script (above)"
        );
    }
    Ok(())
}

/// Runs every test binary again as `nobody`: tests that need root must
/// say so in one line and pass as skipped, the others must pass. The
/// binaries are copied to a world-readable folder first, since the
/// checkout may not be readable by other users.
pub fn unprivileged_tests() -> Result<()> {
    let binaries = test_binaries()?;
    let dir = tempdir("sipwall-unprivileged")?;
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(dir.join("deps"))?;
    let sipwall = target_dir().join("debug/sipwall");
    std::fs::copy(&sipwall, dir.join("sipwall"))
        .with_context(|| format!("copying {}", sipwall.display()))?;
    let mut skipped = 0;
    for bin in &binaries {
        let name = bin.file_name().context("test binary without a name")?;
        let copy = dir.join("deps").join(name);
        std::fs::copy(bin, &copy).with_context(|| format!("copying {}", bin.display()))?;
        eprintln!("gates: {} as nobody", name.to_string_lossy());
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&copy)
            .current_dir(&dir)
            .env("SIPWALL_BIN", dir.join("sipwall"))
            .env("HOME", &dir)
            .output()
            .context("running setpriv (util-linux)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "{} failed without root:\n{}\n{stderr}",
                name.to_string_lossy(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        skipped += stderr.lines().filter(|l| l.starts_with("SKIPPED ")).count();
    }
    eprintln!(
        "gates: {} test binaries pass without root ({skipped} root-only tests skipped)",
        binaries.len()
    );
    Ok(())
}

/// The test executables cargo built, from its JSON messages.
fn test_binaries() -> Result<Vec<PathBuf>> {
    let out = cargo_cmd(&["test", "--no-run", "--message-format=json"])
        .output()
        .context("listing the test binaries")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed");
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                bins.push(PathBuf::from(exe));
            }
        }
    }
    Ok(bins)
}

fn tempdir(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
