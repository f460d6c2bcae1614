//! Builds the XDP program (filter-ebpf) for the BPF target with nightly, so
//! that `include_bytes_aligned!` in `program.rs` embeds it in the library.
//!
//! This does what aya-build's `build_ebpf` does (same toolchain, flags and
//! environment), but keeps the nested cargo's progress lines to itself:
//! aya-build relays every stderr line as `cargo:warning`, so each build of
//! sipwall printed some forty "warning: filter-kernel@…: Compiling …" lines.
//! Here the nested build's stderr is shown only when it fails; compiler
//! warnings about the eBPF code itself are still relayed.
use std::{
    env,
    ffi::OsString,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _, Result};

const PACKAGE: &str = "filter-ebpf";

fn main() -> Result<()> {
    let ebpf_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("filter-kernel has no parent directory"))?
        .join(PACKAGE);
    for dir in [
        ebpf_dir.clone(),
        ebpf_dir.join("src"),
        ebpf_dir.join("../filter-common/src"),
    ] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    const HINT: &str =
        "building the XDP program (run `cargo xtask setup` if bpf-linker or rust-src is missing)";
    build_ebpf(&out_dir, &["--bins"], "ebpf-target", "").context(HINT)?;
    // The bench's cut of the program, without calls mode's code, to time
    // range mode against (tests/bench/media.rs). The bench is a release
    // build; other builds get an empty file and skip that row.
    let range_only = out_dir.join("sipwall-xdp-range-only");
    if env::var("PROFILE").as_deref() == Ok("release") {
        build_ebpf(
            &out_dir,
            &["--bin", "sipwall-xdp", "--no-default-features"],
            "ebpf-target-range-only",
            "-range-only",
        )
        .context(HINT)?;
    } else {
        std::fs::write(&range_only, b"")
            .with_context(|| format!("writing {}", range_only.display()))?;
    }
    Ok(())
}

/// Builds filter-ebpf's binaries (`select`: cargo's target selection and
/// features) in `out_dir/target_dir`, copied to `out_dir` as their name
/// followed by `suffix`.
fn build_ebpf(out_dir: &Path, select: &[&str], target_dir: &str, suffix: &str) -> Result<()> {
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") {
        "riscv64".to_string()
    } else {
        arch
    };

    // `rustup run nightly cargo`: the eBPF target needs nightly's
    // -Z build-std; without rustup, the cargo on PATH.
    let mut cmd = if Command::new("rustup").arg("--version").output().is_ok() {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo"]);
        c
    } else {
        Command::new("cargo")
    };
    // Separate from OUT_DIR's artifacts, and from the outer build's lock.
    let target_dir = out_dir.join(target_dir);
    cmd.args(["build", "--package", PACKAGE, "--release"])
        .args(select)
        .args(["--message-format=json", "--target", target])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir);
    let mut rustflags = OsString::new();
    for (i, flag) in [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer build's compiler and wrapper are stable's; the nested one
    // must pick nightly's.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(key);
    }

    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    // Drain stderr on a thread of its own so neither pipe fills up.
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
    let mut executables = Vec::new();
    let mut diagnostics = Vec::new();
    for line in stdout.lines() {
        let line = line.context("reading the eBPF build's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                if let (Some(name), Some(exe)) = (
                    message["target"]["name"].as_str(),
                    message["executable"].as_str(),
                ) {
                    executables.push((name.to_string(), PathBuf::from(exe)));
                }
            }
            Some("compiler-message") => {
                if let Some(text) = message["message"]["rendered"].as_str() {
                    diagnostics.push(text.to_string());
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        // Everything, as the build script's own stderr, which cargo shows
        // when a build script fails.
        for text in &diagnostics {
            eprintln!("{text}");
        }
        eprintln!("{stderr}");
        bail!("{cmd:?} failed: {status}");
    }
    // Warnings about the eBPF code are worth seeing on every build.
    for line in diagnostics.iter().flat_map(|t| t.lines()) {
        println!("cargo:warning={line}");
    }
    for (name, exe) in executables {
        let dst = out_dir.join(format!("{name}{suffix}"));
        std::fs::copy(&exe, &dst)
            .with_context(|| format!("copying {} to {}", exe.display(), dst.display()))?;
    }
    Ok(())
}
