//! Helpers shared by sipwall's tests and benchmarks.
pub mod packet;
pub mod netns;
pub mod sipp;
