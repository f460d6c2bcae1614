//! Helpers shared by sipwall's tests and benchmarks.
pub mod generator;
pub mod netns;
pub mod operate;
pub mod packet;
pub mod reference;
pub mod sipp;
