//! sipwall loads BPF programs and attaches them to interfaces: it needs
//! CAP_BPF and CAP_NET_ADMIN (in practice, root).
use anyhow::{bail, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Fails with one line saying what is missing when the process lacks the
/// capabilities: to a user, that root is needed; to root whose capabilities
/// were taken away (a container, a systemd unit's CapabilityBoundingSet),
/// which ones are missing, since sudo would not help.
pub fn require_root() -> Result<()> {
    let effective = effective_caps();
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    bail!(
        "running as root but without {}: grant {} to the container or service (its capability bounding set)",
        missing.join(" and "),
        if missing.len() == 1 { "it" } else { "them" }
    )
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
