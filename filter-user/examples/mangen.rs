//! Writes sipwall's manual pages, generated from the command line's own
//! definition: sipwall(8) and one page per command, nested ones included
//! (sipwall-run(8), sipwall-allow-add(8), ...), into the folder given as the
//! only argument. `cargo xtask deb` runs it for the Debian package.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: mangen OUTPUT_DIR")?
        .into();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cli = sipwall::cli::Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its full name (sipwall-allow-add).
    cli.build();
    write_pages(cli, &dir)
}

/// The page of `cmd` and those of its subcommands, in section 8 (the binary
/// is in /usr/sbin: system administration).
fn write_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    let page = clap_mangen::Man::new(cmd).section("8");
    page.generate_to(dir)
        .with_context(|| format!("writing a manual page into {}", dir.display()))?;
    Ok(())
}
