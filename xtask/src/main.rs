//! Project tasks cargo cannot do alone: install the eBPF toolchain pieces and
//! test dependencies, run the test suite as root, the demo, the benchmarks,
//! the Debian package (with its manual pages) and the long fuzz run.
mod deb;
mod gates;
mod prometheus_rule;
mod setup;

use std::process::Command;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (skips what is there).
    Setup,
    /// Set up, check formatting and lints, build, and run the whole test
    /// suite (then again without root, where root-only tests skip).
    Test {
        /// Extra arguments for `cargo test` (after `--`: test-name filters).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the demo (`sipwall-demo`, crate sipwall-lab)
    /// on a throw-away lab.
    Demo,
    /// Set up and run the benchmarks (`target/bench.json` gets the figures).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up and build the Debian package into target/debian/: the manual
    /// pages (`man`), cargo-deb, then the md5sums file cargo-deb leaves
    /// out. Prints the package's path last.
    Deb {
        /// Write the package into this folder instead.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// The package's version instead of Cargo's (e.g. 0.1.0-2, to test
        /// an upgrade).
        #[arg(long, value_name = "VERSION")]
        deb_version: Option<String>,
        /// Quicker, lighter compression (tests).
        #[arg(long)]
        fast: bool,
    },
    /// Write the manual pages, generated from the command line, into target/man/.
    Man,
    /// Write deploy/kubernetes/optional/prometheusrule.yaml from
    /// deploy/prometheus/sipwall-alerts.yml.
    PrometheusRule,
    /// The long differential fuzz runs of the kernel programs (XDP and TC egress).
    Fuzz {
        /// Packets per configuration.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Seed (random when left out; printed for replay).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> Result<()> {
    match Args::parse().task {
        Task::Setup => setup::all(),
        Task::Test { args } => {
            setup::all()?;
            gates::all()?;
            gates::build_without_relayed_warnings()?;
            let mut test = vec!["test"];
            test.extend(args.iter().map(String::as_str));
            cargo(&test)?;
            if args.is_empty() {
                gates::unprivileged_tests()?;
            }
            Ok(())
        }
        Task::Demo => {
            setup::all()?;
            // The demo runs the sipwall built beside it.
            cargo(&[
                "build",
                "--release",
                "-p",
                "filter-user",
                "-p",
                "sipwall-lab",
            ])?;
            run(&mut Command::new(target_dir().join("release/sipwall-demo")))
        }
        Task::Bench { args } => {
            setup::all()?;
            let mut bench = vec![
                "run",
                "--release",
                "-p",
                "sipwall-tests",
                "--bin",
                "bench",
                "--",
            ];
            bench.extend(args.iter().map(String::as_str));
            cargo(&["build", "--release", "-p", "filter-user"])?;
            cargo(&bench)
        }
        Task::Deb {
            out,
            deb_version,
            fast,
        } => {
            setup::all()?;
            let deb = deb::build(out.as_deref(), deb_version.as_deref(), fast)?;
            println!("{}", deb.display());
            Ok(())
        }
        Task::Man => deb::man_pages().map(|_| ()),
        Task::PrometheusRule => prometheus_rule::write(),
        Task::Fuzz { packets, seed } => {
            setup::all()?;
            let mut cmd = cargo_cmd(&[
                "test",
                "--release",
                "-p",
                "sipwall-tests",
                "--test",
                "differential",
                "--test",
                "differential_egress",
                "--",
                "--nocapture",
            ]);
            cmd.env("SIPWALL_FUZZ_PACKETS", packets.to_string());
            if let Some(seed) = seed {
                cmd.env("SIPWALL_FUZZ_SEED", seed.to_string());
            }
            run(&mut cmd)
        }
    }
}

/// Cargo's target directory, wherever xtask is run from.
pub(crate) fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => dir.into(),
        None => workspace_root().join("target"),
    }
}

pub(crate) fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub(crate) fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .current_dir(workspace_root())
        .env("PATH", setup::path_with_cargo_bin());
    cmd
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    run(&mut cargo_cmd(args))
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
