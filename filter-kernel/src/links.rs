//! sipwall's pinned XDP links as the kernel knows them: open one, tell
//! whether it still has an interface, and find the pin of the link that
//! runs a given program anywhere on the bpffs mounts (to name the pin root
//! of a sipwall attached with another `--bpffs`).
use std::{
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use crate::{
    netns::NetnsId,
    pins::LINK_PIN,
    syscall::{bpf, bpf_fd, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD},
};

/// The pinned link at `path` and the program it runs, if it is readable.
pub fn open_link(path: &Path) -> Option<(FdLink, u32)> {
    let link = FdLink::from(PinnedLink::from_pin(path).ok()?);
    let prog = link.info().ok()?.program_id();
    Some((link, prog))
}

/// Whether the XDP link pinned at `path` still has an interface (a link
/// whose interface was deleted is defunct: the kernel reports interface
/// index 0). `false` when it cannot be read.
pub fn link_is_live(path: &Path) -> bool {
    const BPF_LINK_TYPE_XDP: u32 = 6;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // BPF_OBJ_GET: pathname, bpf_fd, file_flags.
    let mut attr = [0u8; 16];
    attr[0..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    // SAFETY: the path `attr` points to outlives the call.
    let Ok(fd) = (unsafe { bpf_fd(BPF_OBJ_GET, &mut attr) }) else {
        return false;
    };
    // struct bpf_link_info: type, id, prog_id (u32 each), then the
    // per-type union, 8-aligned; for XDP links it starts with ifindex.
    let mut info = [0u8; 64];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: the buffer pointer and length in `attr` describe `info`,
    // which outlives the call.
    if unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.is_err() {
        return false;
    }
    let word = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap_or_default());
    word(0) == BPF_LINK_TYPE_XDP && word(16) != 0
}

/// The pinned `link` (sipwall's name for its XDP link pins) that runs
/// program `prog_id`, searched for on every bpffs mounted, a few folders
/// deep.
pub fn find_link_pin(prog_id: u32) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // mountinfo: ... mount-point (field 5) ... " - " fstype ...
    let bpffs: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "bpf")
                .then(|| PathBuf::from(unescape_mount(point)))
        })
        .collect();
    fn walk(dir: &Path, depth: u32, prog_id: u32) -> Option<PathBuf> {
        let entries = std::fs::read_dir(dir).ok()?;
        for entry in entries.flatten().take(10_000) {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth > 0 {
                if let Some(found) = walk(&path, depth - 1, prog_id) {
                    return Some(found);
                }
            } else if entry.file_name() == LINK_PIN
                && open_link(&path).is_some_and(|(_, p)| p == prog_id)
            {
                return Some(path);
            }
        }
        None
    }
    bpffs.iter().find_map(|m| walk(m, 4, prog_id))
}

/// The pin root a link pin found by [`find_link_pin`] belongs to:
/// `<root>/netns-<INODE>/<iface>/link` (or layout 3's `<root>/<iface>/link`).
pub fn root_of_link_pin(link: &Path) -> Option<PathBuf> {
    let ns_or_root = link.parent()?.parent()?;
    let is_ns = ns_or_root
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| NetnsId::from_dir_name(n).is_some());
    Some(if is_ns {
        ns_or_root.parent()?.to_path_buf()
    } else {
        ns_or_root.to_path_buf()
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
