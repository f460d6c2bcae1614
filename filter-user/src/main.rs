use std::process::ExitCode;

use clap::Parser as _;
use sipwall::{
    cli::{self, Cli, Command},
    error::{exit_status, Verdict},
    ops::notices,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on usage errors and 0 for --help/--version.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if !matches!(cli.command, Command::Run(_)) {
        // Like other command-line tools, end quietly when the reader of our
        // output goes away (`sipwall stats --watch 1 | head`). The service
        // keeps Rust's default and survives a closed stderr.
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    notices::init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Verdict>().is_none() {
                eprintln!("sipwall: {e:#}");
            }
            ExitCode::from(exit_status(&e) as u8)
        }
    }
}
