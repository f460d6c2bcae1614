//! Helpers shared by sipwall's tests and benchmarks.
