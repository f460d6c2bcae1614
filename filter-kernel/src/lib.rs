//! The kernel side as userspace sees it: the embedded XDP program, its pins
//! on bpffs, its maps (the one door to them), and attaching it to an
//! interface. It installs what `filter-policy` describes and prints
//! nothing: warnings go to the `log` crate (target `filter_kernel`), which
//! `sipwall` shows on stderr.
pub mod attach;
pub mod attachment;
pub mod bans;
pub mod capture;
pub mod direct;
pub mod flows;
pub mod iface;
pub mod links;
pub mod maps;
pub mod media;
pub mod netns;
pub mod pins;
pub mod privileges;
pub mod program;
pub mod rcu;
pub mod runner;
mod syscall;
