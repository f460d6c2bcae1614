//! Operations on attachments: one snapshot per interface (rendered by
//! `stats`, `status` and metrics), the `run` service, and pcap replay.
pub mod check;
pub mod metrics;
pub mod service;
pub mod snapshot;
pub mod stats;
pub mod status;
