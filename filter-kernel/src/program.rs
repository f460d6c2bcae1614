//! The embedded XDP program and how it is loaded: with private maps (pcap
//! replay, tests) or with maps pinned in a directory, reused if they exist,
//! so that allowlists and counters survive the tool and program upgrades.
use std::path::Path;

use anyhow::{Context as _, Result};
use aya::{
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};

/// The object built from filter-ebpf by build.rs.
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipwall-xdp"));

/// Helper programs for `cargo xtask bench` (empty PASS floor, plain
/// XDP_DROP, live-frames traffic generators), built from filter-ebpf's
/// `sipwall-bench-xdp` binary. Never loaded by sipwall itself.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipwall-bench-xdp"));

/// The same program built without calls mode's code (filter-ebpf's
/// `calls` feature off), for the bench to time range mode against. Empty
/// in all but release builds.
pub static RANGE_ONLY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipwall-xdp-range-only"));

/// Name of the XDP function in the object.
pub const PROGRAM_NAME: &str = "sipwall";
/// Name of the TC egress function (strict mode's flow learning).
pub const EGRESS_NAME: &str = "sipwall_egress";

/// Names of every map the object declares, as the ELF names them: the maps
/// of `filter_common::maps` and those the libraries add (aya-log's). The
/// object's data sections (`.rodata`, ...) hold constants, not state, and
/// are not pinned.
pub fn object_map_names() -> Result<Vec<String>> {
    use aya_obj::EbpfSectionKind;
    let object =
        aya_obj::Object::parse(PROGRAM_OBJECT).context("parsing the embedded XDP object")?;
    let mut names: Vec<String> = object
        .maps
        .into_iter()
        .filter(|(_, map)| {
            matches!(
                map.section_kind(),
                EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps
            )
        })
        .map(|(name, _)| name)
        .collect();
    names.sort();
    Ok(names)
}

/// Loads the program into the kernel (it passes the verifier here). With
/// `pin_dir`, every map of the object is taken from `pin_dir/NAME` or
/// created and pinned there.
pub fn load(pin_dir: Option<&Path>) -> Result<Ebpf> {
    load_object(PROGRAM_OBJECT, pin_dir)
}

/// [`load`] for another build of the program (the bench's
/// [`RANGE_ONLY_OBJECT`]).
pub fn load_object(object: &[u8], pin_dir: Option<&Path>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let names = match pin_dir {
        Some(_) => object_map_names()?,
        None => Vec::new(),
    };
    if let Some(dir) = pin_dir {
        for name in &names {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader.load(object).with_context(|| match pin_dir {
        Some(dir) => format!(
            "loading the XDP program with the maps pinned in {} (pins from an incompatible sipwall version? `sipwall detach` removes them)",
            dir.display()
        ),
        None => "loading the XDP program".to_string(),
    })?;
    program_mut(&mut ebpf)?
        .load()
        .context("the kernel's verifier refused the XDP program")?;
    egress_mut(&mut ebpf)?
        .load()
        .context("the kernel's verifier refused the TC egress program")?;
    Ok(ebpf)
}

pub fn egress_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    Ok(ebpf
        .program_mut(EGRESS_NAME)
        .context("the object has no egress program")?
        .try_into()?)
}

pub fn egress(ebpf: &Ebpf) -> Result<&SchedClassifier> {
    Ok(ebpf
        .program(EGRESS_NAME)
        .context("the object has no egress program")?
        .try_into()?)
}

pub fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PROGRAM_NAME)
        .context("the object has no sipwall program")?
        .try_into()?)
}

pub fn program(ebpf: &Ebpf) -> Result<&Xdp> {
    Ok(ebpf
        .program(PROGRAM_NAME)
        .context("the object has no sipwall program")?
        .try_into()?)
}
