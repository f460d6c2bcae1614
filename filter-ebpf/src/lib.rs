// Exists so that filter-user can name this crate as a build-dependency; the
// program itself is the `sipwall` binary in main.rs.
#![no_std]
