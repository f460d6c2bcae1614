//! sipwall's userspace, the top two layers (docs/layout.md says where each
//! thing lives):
//!
//! - [`cli`]: the command line, one module per subcommand; `main.rs` only
//!   dispatches to it.
//! - [`ops`]: what the commands do beyond one map write: the per-interface
//!   snapshot rendered by `stats`, `status` and metrics, the `run` service,
//!   pcap replay, changes to the live allow and ban lists.
//!
//! Below them, crates of their own: `filter_kernel` (the embedded program,
//! its pins and maps, attaching it) over `filter_policy` (the configuration
//! file and the ruleset it becomes).
pub mod cli;
pub mod error;
pub mod ops;
