//! Operations on attachments, composing filter-kernel and filter-policy:
//! one snapshot per interface (rendered by `stats`, `status` and metrics),
//! the `run` service (with its HTTP server and the watch on its
//! configuration file), pcap replay, `explain` (a described packet and the
//! row that decides it), and changes to the live allow and ban lists.
pub mod admission;
pub mod allowlist;
pub mod banlist;
pub mod capture;
pub mod check;
pub mod confirm;
pub mod counters;
pub mod describe;
pub mod doctor;
pub mod ephemeral;
pub mod explain;
pub mod frames;
pub mod http;
pub mod json;
pub mod lockout;
pub mod media_metrics;
pub mod metrics;
pub mod notices;
pub mod pinholes;
pub mod process;
pub mod reader;
pub mod service;
pub mod sessions;
pub mod snapshot;
pub mod stats;
pub mod status;
pub mod top;
pub mod watch;
