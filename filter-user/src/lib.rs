//! sipwall's userspace, in four layers (docs/layout.md says where each
//! thing lives):
//!
//! - [`cli`]: the command line, one module per subcommand; `main.rs` only
//!   dispatches to it.
//! - [`ops`]: what the commands do beyond one map write: the per-interface
//!   snapshot rendered by `stats`, `status` and metrics, the `run` service,
//!   pcap replay.
//! - `filter_policy` (its own crate): the configuration file and the
//!   ruleset it becomes.
//! - [`kernel`]: the embedded program, its pins and maps, attaching it.
//!
//! [`lab`] is the throw-away network-namespace lab of `sipwall demo` and the
//! tests.
pub mod cli;
pub mod error;
pub mod lab;
pub mod ops;
