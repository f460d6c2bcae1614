//! The raw bpf(2) system call, for what aya does not offer: array elements
//! by hand, batch operations on the tries, the map of maps that waits for
//! programs in flight, a pinned link's interface. The one place in sipwall
//! that makes it.
use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_OBJ_GET: libc::c_long = 7;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
pub const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
pub const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Runs command `cmd` on `attr`, the prefix of `union bpf_attr` that `cmd`
/// reads, passed with its size (the kernel zero-extends the rest); returns
/// what the call returned.
///
/// # Safety
///
/// Every address `attr` holds must point to memory that is valid, for the
/// whole call, for what `cmd` reads or writes there: keys and values of the
/// map's sizes, buffers of the lengths `attr` gives, NUL-terminated paths.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusive `T` of the size passed; what it
    // points to is the caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Runs a command that returns a new descriptor, as [`bpf`] does.
///
/// # Safety
///
/// As for [`bpf`].
pub unsafe fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: the caller's promise, passed on.
    let fd = unsafe { bpf(cmd, attr) }?;
    // SAFETY: the kernel just returned this new descriptor to us; nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The part of `union bpf_attr` that the element commands (lookup, update)
/// read.
#[repr(C)]
pub struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl MapElem {
    /// `key` and `value` are addresses, of the map's key and value sizes.
    pub fn new(map_fd: BorrowedFd<'_>, key: u64, value: u64) -> Self {
        MapElem {
            map_fd: map_fd.as_raw_fd() as u32,
            _pad: 0,
            key,
            value,
            flags: 0,
        }
    }
}
