//! The helper programs of `filter-ebpf/src/bin/bench-progs.rs` (embedded in
//! the sipwall library as `BENCH_OBJECT`) and the two ways the bench runs
//! XDP programs: timed BPF_PROG_TEST_RUN and live frames.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, PerCpuArray, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf,
};
use filter_common::Reason;
use filter_kernel::program::BENCH_OBJECT;

/// Returns XDP_PASS and nothing else: the floor.
pub const PASS: &str = "bench_pass";
/// Returns XDP_DROP and nothing else.
pub const DROP: &str = "bench_drop";
/// The floor plus the capture flag's check (what a packet pays while no
/// capture runs).
pub const CAPTURE_FLAG: &str = "bench_capture_flag";
/// The reference: a minimal hand-written program of the default policy for
/// plain IPv4.
pub const REFERENCE: &str = "bench_reference";
/// The reference with the least per-source accounting of denied packets.
pub const REFERENCE_SOURCES: &str = "bench_reference_sources";
/// Live-frames generators (see the eBPF source for what each sends).
pub const GEN_SAME: &str = "bench_gen_same";
pub const GEN_FLOOD: &str = "bench_gen_flood";
pub const GEN_MIX: &str = "bench_gen_mix";
pub const GEN_FLOOD6: &str = "bench_gen_flood6";
pub const GEN_FLOOD6_TWICE: &str = "bench_gen_flood6_twice";
/// Flood fronts for BPF_PROG_TEST_RUN: the next source, then the program
/// set with [`BenchProgs::set_flood_target`].
pub const FLOOD_FRONT: &str = "bench_flood_front";
pub const FLOOD_FRONT6: &str = "bench_flood_front6";

const ALL: [&str; 12] = [
    PASS,
    DROP,
    CAPTURE_FLAG,
    REFERENCE,
    REFERENCE_SOURCES,
    GEN_SAME,
    GEN_FLOOD,
    GEN_MIX,
    GEN_FLOOD6,
    GEN_FLOOD6_TWICE,
    FLOOD_FRONT,
    FLOOD_FRONT6,
];

/// Reasons the reference counts (`REF_COUNTERS`' entries): sipwall's
/// indices 0 (`sip_allowed`) to 6 (`malformed`).
const REFERENCE_REASONS: usize = 7;

/// Frames per live-frames batch (the kernel's default).
const LIVE_BATCH: u32 = 64;

pub struct BenchProgs {
    ebpf: Ebpf,
}

impl BenchProgs {
    /// Loads every helper program (with private maps).
    pub fn load() -> Result<BenchProgs> {
        let mut ebpf = Ebpf::load(BENCH_OBJECT).context("loading the bench programs")?;
        for name in ALL {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("the bench object has no program {name}"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("the verifier refused {name}"))?;
        }
        Ok(BenchProgs { ebpf })
    }

    pub fn xdp(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    pub fn xdp_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    /// The reference's counters (`REF_COUNTERS`), packets summed over
    /// CPUs, by sipwall's names of the same reasons.
    pub fn reference_counters(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let counters: PerCpuArray<_, [u64; 2]> = PerCpuArray::try_from(
            self.ebpf
                .map("REF_COUNTERS")
                .context("the bench object has no REF_COUNTERS map")?,
        )?;
        let mut out = std::collections::BTreeMap::new();
        // The reference counts under sipwall's first reason indices.
        for reason in &Reason::ALL[..REFERENCE_REASONS] {
            let per_cpu = counters
                .get(&(*reason as u32), 0)
                .context("reading REF_COUNTERS")?;
            let packets: u64 = per_cpu.iter().map(|c| c[0]).sum();
            if packets > 0 {
                out.insert(reason.name().to_string(), packets);
            }
        }
        Ok(out)
    }

    /// Sets the program the flood fronts hand each frame to.
    pub fn set_flood_target(&mut self, prog: &ProgramFd) -> Result<()> {
        let mut next: ProgramArray<_> = ProgramArray::try_from(
            self.ebpf
                .map_mut("FLOOD_NEXT")
                .context("the bench object has no FLOOD_NEXT map")?,
        )?;
        next.set(0, prog, 0).context("writing FLOOD_NEXT")?;
        Ok(())
    }

    /// Sets the interface (index, in the namespace the generators run in)
    /// the generators send to.
    pub fn set_target(&mut self, ifindex: u32) -> Result<()> {
        let mut target: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("GEN_TARGET")
                .context("the bench object has no GEN_TARGET map")?,
        )?;
        target.set(0, ifindex, 0).context("writing GEN_TARGET")?;
        Ok(())
    }
}

/// The C version of the reference (tests/bench/c/reference.c), built with
/// clang when the bench runs, so that a Rust program is also compared
/// with what clang makes of the same policy.
pub struct ReferenceC {
    ebpf: Ebpf,
}

/// Name of the XDP function in reference.c.
const REFERENCE_C: &str = "bench_reference_c";

impl ReferenceC {
    /// Builds and loads it; `Err` says why it cannot (clang missing).
    pub fn load() -> Result<std::result::Result<ReferenceC, String>> {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/c/reference.c");
        let object =
            std::env::temp_dir().join(format!("sipwall-bench-reference-{}.o", std::process::id()));
        let built = std::process::Command::new("clang")
            .args(["-O2", "-target", "bpf", "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .output();
        let out = match built {
            Ok(out) => out,
            Err(e) => {
                return Ok(Err(format!(
                    "clang not found ({e}); `cargo xtask setup` installs it"
                )))
            }
        };
        anyhow::ensure!(
            out.status.success(),
            "clang could not build {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let bytes = std::fs::read(&object).with_context(|| format!("reading {}", object.display()));
        let _ = std::fs::remove_file(&object);
        let mut ebpf = Ebpf::load(&bytes?).context("loading the C reference")?;
        let prog: &mut Xdp = ebpf
            .program_mut(REFERENCE_C)
            .context("reference.c has no program bench_reference_c")?
            .try_into()?;
        prog.load()
            .context("the verifier refused the C reference")?;
        Ok(Ok(ReferenceC { ebpf }))
    }

    pub fn xdp(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(REFERENCE_C)
            .context("no program bench_reference_c")?
            .try_into()?)
    }
}

/// Runs `frame` through `prog` `repeat` times in the kernel; returns the
/// action and the mean nanoseconds per run.
pub fn time(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = repeat;
    let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

/// How long a live-frames run took.
#[derive(Clone, Copy, Debug)]
pub struct LiveRun {
    /// Wall time of the whole call.
    pub wall: Duration,
    /// The kernel's own measure, per frame: time spent in the run loop,
    /// without the time the thread was rescheduled (so other processes on
    /// a shared machine do not count), but with what the receiver does in
    /// the softirq the loop triggers on the same CPU.
    pub kernel_ns: f64,
}

/// Feeds `count` copies of `frame` to a generator in live-frames mode: what
/// it redirects leaves through a real interface. Must run on a thread in
/// the namespace of that interface.
pub fn live(prog: &Xdp, frame: &[u8], count: u32) -> Result<LiveRun> {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = count;
    opts.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_BATCH);
    let started = Instant::now();
    let r = prog
        .test_run(opts)
        .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES")?;
    Ok(LiveRun {
        wall: started.elapsed(),
        kernel_ns: r.duration.as_nanos() as f64,
    })
}
