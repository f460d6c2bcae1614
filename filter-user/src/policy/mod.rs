//! What the filter enforces: the configuration file, the ruleset it becomes
//! (what the program reads), allowlist entries and allowlist changes.
pub mod allowlist;
pub mod banlist;
pub mod cidr;
pub mod config;
pub mod input;
pub mod rows;
pub mod ruleset;
