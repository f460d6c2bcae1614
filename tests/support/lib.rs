//! Helpers shared by sipwall's tests and benchmarks.
pub mod calls;
pub mod commands;
pub mod debian;
pub mod generator;
pub mod netns;
pub mod operate;
pub mod packet;
pub mod reference;
pub mod reference_egress;
pub mod service;
pub mod sipp;

/// Whether the tests run with the privileges the kernel side needs (root,
/// or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces and bpffs).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// First line of a test that needs root: without it, the test says so in
/// one line and returns (it passes as skipped), so that `cargo test` works
/// for a contributor without root. `cargo xtask test` (CI) runs as root.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::is_root() {
            // Straight to stderr: the test harness captures `eprintln!` of
            // passing tests, and this line is for the person running them.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED {}: needs root (BPF and network namespaces); run `cargo xtask test` as root\n",
                    std::thread::current().name().unwrap_or("this test")
                )
                .as_bytes(),
            );
            return;
        }
    };
}
