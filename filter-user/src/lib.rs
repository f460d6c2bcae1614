//! sipwall's userspace: configuration, loading and pinning the XDP program,
//! allowlist updates, counters and pcap replay. `main.rs` only dispatches.
pub mod check;
pub mod cidr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod maps;
pub mod privileges;
pub mod program;
pub mod ruleset;
pub mod runner;
