use std::process::ExitCode;

use clap::Parser as _;
use sipwall::{cli::Cli, commands, error::exit_status};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on usage errors and 0 for --help/--version.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipwall: {e:#}");
            ExitCode::from(exit_status(&e) as u8)
        }
    }
}
