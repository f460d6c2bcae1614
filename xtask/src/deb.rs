//! The Debian package: manual pages generated from the command line
//! (clap_mangen, through filter-user's `mangen` example), cargo-deb, and
//! the md5sums control file, which cargo-deb does not write (dpkg --verify
//! and debsums check the installed files against it).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, cargo_cmd, run, workspace_root};

/// Where the manual pages go; filter-user/Cargo.toml's assets name it.
fn man_dir() -> PathBuf {
    workspace_root().join("target/man")
}

/// Writes every command's manual page into target/man/ (the old ones
/// removed first, so a command that is gone leaves no page behind).
pub fn man_pages() -> Result<PathBuf> {
    let dir = man_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let dir_arg = dir.to_str().context("a target path that is not UTF-8")?;
    cargo(&[
        "run",
        "--quiet",
        "--locked",
        "-p",
        "filter-user",
        "--example",
        "mangen",
        "--",
        dir_arg,
    ])?;
    Ok(dir)
}

/// Builds the package; returns its path.
pub fn build(out: Option<&Path>, version: Option<&str>, fast: bool) -> Result<PathBuf> {
    man_pages()?;
    let mut args = vec!["deb", "-p", "filter-user", "--locked"];
    if fast {
        args.push("--fast");
    }
    let out_arg;
    if let Some(out) = out {
        out_arg = out.to_str().context("an output path that is not UTF-8")?;
        args.extend(["-o", out_arg]);
    }
    if let Some(version) = version {
        args.extend(["--deb-version", version]);
    }
    // Progress on stderr as it comes; the package's path on stdout.
    let built = cargo_cmd(&args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo deb")?;
    if !built.status.success() {
        bail!("cargo deb failed: {}", built.status);
    }
    // cargo-deb prints the package's path on standard output.
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    if !deb.is_file() {
        bail!("cargo deb did not name the package it wrote: {deb:?}");
    }
    add_md5sums(&deb)?;
    Ok(deb)
}

/// Unpacks the package, writes DEBIAN/md5sums for every file but the
/// conffiles (as dh_md5sums does: dpkg tracks those by their own hashes),
/// and packs it again in place.
fn add_md5sums(deb: &Path) -> Result<()> {
    let tree = deb.with_extension("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    run(Command::new("dpkg-deb")
        .arg("--raw-extract")
        .arg(deb)
        .arg(&tree))?;
    let conffiles = std::fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap_or_default();
    let mut files = Vec::new();
    collect_files(&tree, &tree, &mut files)?;
    files.retain(|f| !f.starts_with("DEBIAN/") && !conffiles.lines().any(|c| c == format!("/{f}")));
    files.sort();
    let mut md5sum = Command::new("md5sum");
    md5sum.arg("--").args(&files).current_dir(&tree);
    let sums = md5sum.output().context("running md5sum")?;
    if !sums.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&sums.stderr));
    }
    std::fs::write(tree.join("DEBIAN/md5sums"), &sums.stdout)?;
    let packed = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(deb));
    std::fs::remove_dir_all(&tree)?;
    packed
}

/// Regular files under `dir`, as paths relative to `root`.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root)?;
            out.push(
                rel.to_str()
                    .context("a packaged path that is not UTF-8")?
                    .to_string(),
            );
        }
    }
    Ok(())
}
