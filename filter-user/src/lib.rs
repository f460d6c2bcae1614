//! sipwall's userspace: configuration, loading and pinning the XDP program,
//! allowlist updates, counters, metrics and pcap replay. `main.rs` only
//! dispatches through `commands`.
pub mod allow;
pub mod attach;
pub mod check;
pub mod cidr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod direct;
pub mod error;
pub mod lab;
pub mod maps;
pub mod metrics;
pub mod pins;
pub mod privileges;
pub mod program;
pub mod rcu;
pub mod ruleset;
pub mod runner;
pub mod service;
pub mod stats;
pub mod status;
