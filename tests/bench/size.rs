//! Size figures of a loaded XDP program, as the kernel reports them
//! (BPF_OBJ_GET_INFO_BY_FD, what `bpftool prog show` prints): translated
//! ("xlated") and JIT-compiled size, the verifier's processed-instruction
//! count, and how many byte stores (BPF_ST/BPF_STX of size B) the xlated
//! code holds, in the whole program and in its main function.
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use anyhow::{ensure, Context as _, Result};
use aya::{programs::Xdp, Ebpf};
use serde_json::{json, Value};

/// sipwall's program before its fast paths: the object built
/// from main at commit e6b8add, measured once with `bench --before OBJ`
/// (kernel 6.18, x86-64 JIT).
pub const BEFORE_MAIN_E6B8ADD: Sizes = Sizes {
    xlated_insns: 2501,
    jited_bytes: 12106,
    verified_insns: 24862,
    byte_stores: 372,
    byte_stores_main: 372,
    main_insns: 2501,
};

#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Instructions after the verifier's rewrites (8 bytes each).
    pub xlated_insns: u32,
    /// Bytes of native code.
    pub jited_bytes: u32,
    /// Instructions the verifier processed (over all paths).
    pub verified_insns: u32,
    /// Byte stores in the whole xlated program.
    pub byte_stores: u32,
    /// Byte stores in its main function (without the subprograms, such as
    /// the rare path that sends a log record).
    pub byte_stores_main: u32,
    /// Instructions of the main function.
    pub main_insns: u32,
}

impl Sizes {
    pub fn to_json(self) -> Value {
        json!({
            "xlated_insns": self.xlated_insns,
            "xlated_bytes": self.xlated_insns * 8,
            "jited_bytes": self.jited_bytes,
            "verified_insns": self.verified_insns,
            "byte_stores": self.byte_stores,
            "byte_stores_main": self.byte_stores_main,
            "main_insns": self.main_insns,
        })
    }
}

/// The part of `struct bpf_prog_info` read here (kernel UAPI layout, up to
/// `verified_insns`).
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    attach_btf_obj_id: u32,
    attach_btf_id: u32,
    _pad: u32,
}

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn get_info(fd: BorrowedFd<'_>, info: &mut ProgInfo) -> Result<()> {
    let attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: info as *mut ProgInfo as u64,
    };
    // SAFETY: `attr` is the prefix of bpf_attr this command reads, with its
    // size; `info` and every buffer it points to outlive the call and have
    // the lengths it states.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoByFd,
            std::mem::size_of::<InfoByFd>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_OBJ_GET_INFO_BY_FD");
    }
    Ok(())
}

/// Instructions the verifier may process per program (its limit is
/// 1,000,000; a new feature needs the room).
pub const COMPLEXITY_GATE: u32 = 600_000;

/// The instructions the verifier processed for a loaded program (any
/// type), as `bpftool prog show` reports them.
pub fn verified_insns(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut info = ProgInfo::default();
    get_info(fd, &mut info)?;
    Ok(info.verified_insns)
}

/// The figures of a loaded program.
pub fn of(prog: &Xdp) -> Result<Sizes> {
    let fd = prog.fd().context("the program is not loaded")?;
    let fd = fd.as_fd();
    let mut info = ProgInfo::default();
    get_info(fd, &mut info)?;
    let (xlated_len, nr_funcs) = (info.xlated_prog_len, info.nr_func_info);
    ensure!(
        xlated_len > 0,
        "the kernel shows no translated code (needs root)"
    );
    let mut insns = vec![0u64; xlated_len as usize / 8];
    let mut funcs = vec![[0u32; 2]; nr_funcs as usize];
    let mut again = ProgInfo {
        xlated_prog_len: xlated_len,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        nr_func_info: nr_funcs,
        func_info_rec_size: 8,
        func_info: funcs.as_mut_ptr() as u64,
        ..Default::default()
    };
    get_info(fd, &mut again)?;
    // bpf_func_info: the first instruction of each function, in order.
    let main_end = funcs
        .get(1)
        .map_or(insns.len(), |f| f[0] as usize)
        .min(insns.len());
    let byte_stores = |code: &[u64]| {
        code.iter()
            .filter(|&&insn| is_byte_store(insn.to_le_bytes()[0]))
            .count() as u32
    };
    Ok(Sizes {
        xlated_insns: insns.len() as u32,
        jited_bytes: info.jited_prog_len,
        verified_insns: info.verified_insns,
        byte_stores: byte_stores(&insns),
        byte_stores_main: byte_stores(&insns[..main_end]),
        main_insns: main_end as u32,
    })
}

/// BPF_ST or BPF_STX, mode BPF_MEM, size BPF_B.
fn is_byte_store(opcode: u8) -> bool {
    const CLASS_ST: u8 = 0x02;
    const CLASS_STX: u8 = 0x03;
    const SIZE_B: u8 = 0x10;
    const MODE_MEM: u8 = 0x60;
    matches!(opcode & 0x07, CLASS_ST | CLASS_STX)
        && opcode & 0x18 == SIZE_B
        && opcode & 0xe0 == MODE_MEM
}

/// The figures of sipwall's program in another build of the object (the
/// XDP function named `sipwall`), loaded with private maps.
pub fn of_object(path: &std::path::Path) -> Result<Sizes> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ebpf = Ebpf::load(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let prog: &mut Xdp = ebpf
        .program_mut(filter_kernel::program::PROGRAM_NAME)
        .with_context(|| format!("{} has no program sipwall", path.display()))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("the verifier refused {}", path.display()))?;
    of(prog)
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_stores_are_told_from_other_stores() {
        // *(u8 *)(r10 - 1) = r1 (STX B), *(u8 *)(r10 - 1) = 0 (ST B)
        assert!(super::is_byte_store(0x73) && super::is_byte_store(0x72));
        // STX W/H/DW, LDX B, atomic add W
        for op in [0x63, 0x6b, 0x7b, 0x71, 0xc3] {
            assert!(!super::is_byte_store(op), "{op:#x}");
        }
    }
}
