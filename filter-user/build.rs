//! Stamps the binary with its revision (`sipwall_build_info`).
use std::{env, path::Path, process::Command};

fn main() {
    revision();
}

/// `SIPWALL_REVISION` for `sipwall_build_info`: the environment's value
/// when given (an image built without `.git` passes it), else the checkout's
/// commit, else "unknown".
fn revision() {
    println!("cargo:rerun-if-env-changed=SIPWALL_REVISION");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let revision = env::var("SIPWALL_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // Run again when HEAD moves: a checkout changes HEAD, a commit
            // the branch's ref.
            let branch = git(&["symbolic-ref", "-q", "HEAD"]);
            for name in ["HEAD"].into_iter().chain(branch.as_deref()) {
                let path = git(&["rev-parse", "--path-format=absolute", "--git-path", name]);
                if let Some(path) = path.filter(|p| Path::new(p).exists()) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SIPWALL_REVISION={revision}");
}
