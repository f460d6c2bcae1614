//! What the Debian package's tests share: commands that must succeed, and
//! the package itself, built as `cargo xtask deb` builds it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub use crate::commands::{output as run, run_ok};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `cargo xtask deb --fast --out OUT EXTRA...` (manual pages, cargo-deb,
/// md5sums); returns the package's path, which it prints last.
pub fn build_package(out: &Path, extra: &[&str]) -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let path = format!(
        "{}:{}",
        Path::new(&home).join(".cargo/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let printed = run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["xtask", "deb", "--fast", "--out"])
            .arg(out)
            .args(extra)
            .current_dir(repo())
            .env("PATH", path),
    );
    PathBuf::from(printed.lines().last().expect("xtask deb names the package"))
}
