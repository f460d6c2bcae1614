//! The Debian package: built with cargo-deb (release profile, as shipped),
//! installed on this machine with `dpkg -i`, its binary run, its unit
//! accepted by `systemd-analyze verify` (offline: no systemd runs as PID 1
//! here), its configuration a conffile, then purged so the machine is left
//! as it was, also when the test fails (a Drop guard).
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const PACKAGE: &str = "sipwall";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]))
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges the package when dropped (the test installed it).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
    }
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_deb_builds_installs_runs_verifies_and_purges_clean() {
    sipwall_tests::skip_unless_root!();
    if installed() {
        // Someone's real installation: not ours to replace or remove.
        eprintln!("SKIPPED: the {PACKAGE} package is installed on this machine; the test would replace and purge it");
        return;
    }
    let out_dir = Scratch(std::env::temp_dir().join(format!("sipwall-deb-{}", std::process::id())));
    std::fs::create_dir_all(&out_dir.0).unwrap();
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let path = format!(
        "{}:{}",
        Path::new(&home).join(".cargo/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["deb", "-p", "filter-user", "--fast", "-o"])
            .arg(&out_dir.0)
            .current_dir(repo())
            .env("PATH", &path),
    );
    let deb = std::fs::read_dir(&out_dir.0)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote no .deb");

    // What it holds, before installing.
    let contents = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for file in [
        "./usr/sbin/sipwall",
        "./lib/systemd/system/sipwall@.service",
        "./etc/sipwall/sipwall.toml",
        "./usr/share/doc/sipwall/README.md",
        "./usr/share/doc/sipwall/docs/cli.md",
        "./usr/share/doc/sipwall/docs/runbook.md",
    ] {
        assert!(
            contents.contains(file),
            "{file} not in the package:\n{contents}"
        );
    }

    let guard = Installed;
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(installed());
    let version = run_ok(Command::new("/usr/sbin/sipwall").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("sipwall {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run_ok(
        Command::new("/usr/sbin/sipwall")
            .arg("doctor")
            .arg("--help"),
    );
    assert!(help.contains("--provider-host"), "{help}");

    // The configuration is a conffile (kept on upgrades, asked about when
    // changed) and is the shipped example.
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        conffiles.contains("/etc/sipwall/sipwall.toml"),
        "{conffiles}"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/sipwall/sipwall.toml").unwrap(),
        std::fs::read_to_string(repo().join("dist/sipwall.toml")).unwrap()
    );

    // The unit, as installed, for an instance; and proof that verify
    // rejects a unit it should (a copy whose binary does not exist).
    let unit = "/lib/systemd/system/sipwall@.service";
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/sbin/sipwall run"), "{text}");
    for line in text.lines().filter(|l| l.contains("Capabilit")) {
        assert!(
            !line.starts_with('#') && !line.contains("CAP_SYS_ADMIN"),
            "the unit grants CAP_SYS_ADMIN: {line}"
        );
    }
    assert!(
        text.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n"),
        "{text}"
    );
    let verify = run(Command::new("systemd-analyze")
        .args(["verify", "sipwall@eth0.service"])
        .current_dir(&out_dir.0));
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let broken = out_dir.0.join("sipwall@.service");
    std::fs::write(
        &broken,
        text.replace("/usr/sbin/sipwall ", "/usr/sbin/sipwall-missing "),
    )
    .unwrap();
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(out_dir.0.join("sipwall@eth0.service")));
    assert!(
        !verify.status.success(),
        "verify accepted a unit whose binary is missing"
    );

    // Purged: nothing of it left.
    drop(guard);
    assert!(!installed(), "the package is still installed");
    for path in [
        "/usr/sbin/sipwall",
        unit,
        "/etc/sipwall",
        "/usr/share/doc/sipwall",
    ] {
        assert!(!Path::new(path).exists(), "{path} left behind by the purge");
    }
}
