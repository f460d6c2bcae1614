//! Waiting until no XDP program run that started before now is still going
//! on (an RCU grace period), from userspace.
//!
//! The kernel offers this only as a side effect: updating an element of a
//! map-of-maps makes the update syscall wait, with `synchronize_rcu()`, for
//! every BPF program already running to finish. aya cannot create such a
//! map from userspace, so this makes the three bpf(2) calls itself (through
//! `syscall`).
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    sync::OnceLock,
};

use crate::syscall::{bpf, bpf_fd, MapElem, BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM};

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The part of `union bpf_attr` that BPF_MAP_CREATE reads.
#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
}

fn create(mut attr: MapCreate) -> io::Result<OwnedFd> {
    // SAFETY: BPF_MAP_CREATE's attributes hold no addresses.
    unsafe { bpf_fd(BPF_MAP_CREATE, &mut attr) }
}

/// A one-element array of maps and the one map it holds.
struct Barrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

fn barrier() -> io::Result<Barrier> {
    let inner = create(MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..Default::default()
    })?;
    let outer = create(MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        inner_map_fd: inner.as_raw_fd() as u32,
        ..Default::default()
    })?;
    Ok(Barrier { outer, inner })
}

/// Returns once every BPF program that was running when it was called has
/// finished.
pub fn wait_for_running_programs() -> io::Result<()> {
    static BARRIER: OnceLock<Result<Barrier, String>> = OnceLock::new();
    let barrier = BARRIER
        .get_or_init(|| barrier().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("creating a map of maps: {e}")))?;
    let key = 0u32;
    let value = barrier.inner.as_raw_fd() as u32;
    let mut attr = MapElem::new(
        barrier.outer.as_fd(),
        &key as *const u32 as u64,
        &value as *const u32 as u64,
    );
    // SAFETY: key and value are u32s, the outer map's key and value sizes,
    // and live through the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_and_can_be_repeated() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            // Past the harness's capture, like the integration tests' skips.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED waits_and_can_be_repeated: needs root (CAP_BPF)\n",
            );
            return;
        }
        for _ in 0..3 {
            super::wait_for_running_programs().expect("an RCU grace period through a map of maps");
        }
    }
}
