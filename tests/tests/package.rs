//! The Debian package: built with `cargo xtask deb` (release profile, as
//! shipped), clean for lintian (no error or warning), with md5sums, a
//! changelog and a manual page for every command; installed on this machine
//! with `dpkg -i`, its binary run, its unit accepted by `systemd-analyze
//! verify` and rated at most 3.0 by `systemd-analyze security` (offline: no
//! systemd runs as PID 1 here; tests/tests/boot.rs boots one), its
//! configuration a conffile, the fail2ban action a conffile that
//! `fail2ban-client -d` expands to the installed binary; then purged so the
//! machine is left as it was, also when the test fails (a Drop guard).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sipwall_tests::debian::{build_package, repo, run, run_ok};

const PACKAGE: &str = "sipwall";

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
    let deb = build_package(&out_dir.0, &[]);

    // What it holds, before installing.
    let contents = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for file in [
        "./usr/sbin/sipwall",
        "./usr/lib/systemd/system/sipwall@.service",
        "./etc/sipwall/sipwall.toml",
        "./etc/default/sipwall",
        "./etc/fail2ban/action.d/sipwall.conf",
        "./usr/share/doc/sipwall/examples/fail2ban/jail.d/sipwall.conf",
        "./usr/share/doc/sipwall/changelog.Debian.gz",
        "./usr/share/doc/sipwall/README.md",
        "./usr/share/doc/sipwall/docs/cli.md",
        "./usr/share/doc/sipwall/docs/runbook.md",
    ] {
        assert!(
            contents.contains(&format!("{file}\n")),
            "{file} not in the package:\n{contents}"
        );
    }
    for page in manual_pages() {
        let file = format!("./usr/share/man/man8/{page}.8.gz");
        assert!(
            contents.contains(&file),
            "no manual page {file}:\n{contents}"
        );
    }
    let control = run_ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for member in ["md5sums", "conffiles", "postinst", "prerm", "postrm"] {
        assert!(
            control.contains(&format!(" {member} ")),
            "no {member} in the package's control files:\n{control}"
        );
    }
    lintian_clean(&deb);

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
    for conffile in [
        "/etc/sipwall/sipwall.toml",
        "/etc/default/sipwall",
        "/etc/fail2ban/action.d/sipwall.conf",
    ] {
        assert!(conffiles.contains(conffile), "{conffile}: {conffiles}");
    }
    let copyright = std::fs::read_to_string("/usr/share/doc/sipwall/copyright").unwrap();
    assert!(
        copyright.contains("Upstream-Name: sipwall\n"),
        "{copyright}"
    );
    // Every installed file matches the package's md5sums.
    run_ok(Command::new("dpkg").args(["--verify", PACKAGE]));
    fail2ban_expands_to_the_installed_binary(&out_dir.0);
    assert_eq!(
        std::fs::read_to_string("/etc/sipwall/sipwall.toml").unwrap(),
        std::fs::read_to_string(repo().join("dist/sipwall.toml")).unwrap()
    );

    // The unit, as installed, for an instance; and proof that verify
    // rejects a unit it should (a copy whose binary does not exist).
    let unit = "/usr/lib/systemd/system/sipwall@.service";
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/sbin/sipwall run -i %I "),
        "{text}"
    );
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
    // The hardening, as systemd rates it (--threshold: exit 1 above 3.0).
    let security = run(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--threshold=30",
        "sipwall@eth0.service",
    ]));
    assert!(
        security.status.success(),
        "systemd-analyze security rates the unit above 3.0:\n{}{}",
        String::from_utf8_lossy(&security.stdout),
        String::from_utf8_lossy(&security.stderr)
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
        "/etc/default/sipwall",
        "/etc/fail2ban/action.d/sipwall.conf",
        "/usr/share/doc/sipwall",
        "/usr/share/man/man8/sipwall.8.gz",
    ] {
        assert!(!Path::new(path).exists(), "{path} left behind by the purge");
    }
}

/// sipwall(8) and the page of every command and subcommand, named as
/// clap_mangen names them (sipwall-allow-add), from the command line's
/// definition: a new command without a page fails here.
fn manual_pages() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() != "help" {
                walk(sub, &name, out);
            }
        }
        out.push(name);
    }
    use clap::CommandFactory as _;
    let mut pages = Vec::new();
    walk(&sipwall::cli::Cli::command(), "", &mut pages);
    assert!(pages.len() > 10, "{pages:?}");
    pages
}

/// lintian, pedantic, with every tag shown: no error and no warning (the
/// package's own overrides, each with its reason, are in
/// dist/debian/lintian-overrides).
fn lintian_clean(deb: &Path) {
    let out = run(Command::new("lintian")
        .args(["--info", "--pedantic", "--display-experimental"])
        .arg(deb));
    let text = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        bad.is_empty(),
        "lintian found errors or warnings:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fail2ban-client -d` on the installed action and jail example: the ban
/// runs the package's binary.
fn fail2ban_expands_to_the_installed_binary(scratch: &Path) {
    let conf = scratch.join("fail2ban");
    for sub in ["action.d", "filter.d", "jail.d"] {
        std::fs::create_dir_all(conf.join(sub)).unwrap();
    }
    for filter in ["asterisk.conf", "common.conf"] {
        std::fs::copy(
            Path::new("/etc/fail2ban/filter.d").join(filter),
            conf.join("filter.d").join(filter),
        )
        .unwrap();
    }
    std::fs::copy(
        "/etc/fail2ban/action.d/sipwall.conf",
        conf.join("action.d/sipwall.conf"),
    )
    .unwrap();
    let log = scratch.join("asterisk.log");
    std::fs::write(&log, "").unwrap();
    let jail =
        std::fs::read_to_string("/usr/share/doc/sipwall/examples/fail2ban/jail.d/sipwall.conf")
            .unwrap()
            .replace("/var/log/asterisk/messages", log.to_str().unwrap());
    std::fs::write(conf.join("jail.d/sipwall.conf"), jail).unwrap();
    std::fs::write(conf.join("jail.conf"), "[DEFAULT]\nbackend = polling\n").unwrap();
    std::fs::write(conf.join("fail2ban.conf"), "[Definition]\n").unwrap();
    let dump = run_ok(
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(&conf)
            .arg("-d"),
    );
    assert!(
        dump.contains("/usr/sbin/sipwall ban add"),
        "the packaged action does not run /usr/sbin/sipwall:\n{dump}"
    );
    assert!(!dump.contains("/usr/local/bin"), "{dump}");
}
