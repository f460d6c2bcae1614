//! What the filter enforces, as plain data: the configuration file, the
//! ruleset it becomes (what the program reads), CIDRs, operator files, the
//! allow and ban lists and their changes, and docs/policy.md's rows. It
//! knows nothing of the kernel: `filter-kernel` installs a [`ruleset`],
//! `sipwall`'s `ops` applies changes to a running filter.
pub mod allowlist;
pub mod banlist;
pub mod cidr;
pub mod config;
pub mod error;
pub mod input;
pub mod rows;
pub mod ruleset;
