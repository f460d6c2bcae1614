//! sipwall loads BPF programs and attaches them to interfaces: it needs
//! CAP_BPF and CAP_NET_ADMIN (in practice, root).
use anyhow::{bail, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Fails with one line saying what is missing when the process lacks the
/// capabilities.
pub fn require_root() -> Result<()> {
    let effective = effective_caps();
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        return Ok(());
    }
    bail!("sipwall needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo")
}

/// The effective capability set, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}
