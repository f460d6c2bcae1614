//! Builds the XDP program (filter-ebpf) for the BPF target with nightly, so
//! that `include_bytes_aligned!` in `program.rs` embeds it in the binary.
use anyhow::{anyhow, Context as _};
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("filter-user has no parent directory"))?
        .join("filter-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("../filter-common/src").display()
    );
    build_ebpf(
        [Package {
            name: "filter-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the XDP program (run `cargo xtask setup` if bpf-linker or rust-src is missing)",
    )
}
