//! Exit statuses: 2 for a usage or configuration error ([`UsageError`],
//! which every layer raises), a [`Verdict`]'s own, else 1.
use std::fmt;

pub use filter_policy::error::UsageError;

/// A command that has said everything it had to and ends with this exit
/// status (`doctor`: 1 for a warning, 2 for a failure). Not printed.
#[derive(Debug)]
pub struct Verdict(pub u8);

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Verdict {}

/// Exit status for an error: a [`Verdict`]'s own, 2 for usage and
/// configuration errors, else 1.
pub fn exit_status(err: &anyhow::Error) -> i32 {
    if let Some(Verdict(status)) = err.downcast_ref::<Verdict>() {
        return i32::from(*status);
    }
    if err
        .chain()
        .any(|e| e.downcast_ref::<UsageError>().is_some())
    {
        2
    } else {
        1
    }
}
