//! What a configuration must pass before `attach`, `run` or a reload
//! applies it, unless `--force`: the SSH guard ([`lockout`]), the media
//! settings against the ephemeral ports ([`ephemeral`]), and an allowlist
//! that is neither empty (all signalling denied) nor open to a whole family
//! (docs/configuration.md, "What is refused").
use anyhow::Result;
use filter_policy::{allowlist, ruleset::Ruleset};

use super::{ephemeral, lockout};
use crate::error::UsageError;

pub fn check(ruleset: &Ruleset, force: bool) -> Result<()> {
    lockout::check_ssh_guard(ruleset, force)?;
    ephemeral::check(ruleset, force)?;
    if ruleset.allow.is_empty() && !force {
        return Err(UsageError(
            "the allowlist is empty, which denies all signalling; add --force if that is what you want".into(),
        )
        .into());
    }
    allowlist::refuse_open(&ruleset.allow, force)?;
    Ok(())
}
