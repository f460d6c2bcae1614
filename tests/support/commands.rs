//! Running the outside tools a test drives (podman, dpkg, ...).
use std::process::{Command, Output};

/// `cmd`'s output, or a panic naming the command that would not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("starting {cmd:?}: {e} (`cargo xtask setup` installs the tools)")
    })
}

/// Runs `cmd`; its stdout, or a panic with everything it printed.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
