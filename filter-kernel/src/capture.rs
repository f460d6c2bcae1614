//! The capture's maps of one attachment: the flag with its filter, the
//! per-CPU counts and the ring buffer of samples (docs/pins.md), and who
//! holds the flag (a process that may have died without clearing it).
use std::{
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuValues, RingBuf};
use filter_common::capture::{
    maps as names, CaptureFilter, CaptureStats, SAMPLE_DROP, SAMPLE_HEADER, SAMPLE_OUT,
};

/// One sample read from the ring buffer.
#[derive(Clone, Debug)]
pub struct Sampled {
    pub ts_ns: u64,
    pub len: u32,
    pub reason: u32,
    pub outbound: bool,
    pub dropped: bool,
    pub data: Vec<u8>,
}

pub struct CaptureMaps {
    filter: Array<MapData, CaptureFilter>,
    stats: PerCpuArray<MapData, CaptureStats>,
    ring: RingBuf<MapData>,
}

/// The map pinned in `dir` under `name` (the capture's and calls mode's
/// maps, opened apart from [`crate::maps::Maps`]).
pub(crate) fn pinned(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening the pinned map {} (pins of an older sipwall? `sipwall detach`, then attach again)",
            path.display()
        )
    })?;
    Map::from_map_data(data)
        .with_context(|| format!("{} is not a map sipwall knows", path.display()))
}

impl CaptureMaps {
    /// Opens the capture maps of the attachment pinned in `dir`.
    pub fn open(dir: &Path) -> Result<CaptureMaps> {
        let typed = |name: &str| pinned(dir, name);
        Ok(CaptureMaps {
            filter: Array::try_from(typed(names::CAPTURE)?)
                .context("map CAPTURE has an unexpected type or layout")?,
            stats: PerCpuArray::try_from(typed(names::CAPTURE_STATS)?)
                .context("map CAPTURE_STATS has an unexpected type or layout")?,
            ring: RingBuf::try_from(typed(names::CAPTURE_RING)?)
                .context("map CAPTURE_RING has an unexpected type or layout")?,
        })
    }

    /// Takes the capture maps out of a loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<CaptureMaps> {
        let mut typed = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the program has no map {name}"))
        };
        Ok(CaptureMaps {
            filter: Array::try_from(typed(names::CAPTURE)?)?,
            stats: PerCpuArray::try_from(typed(names::CAPTURE_STATS)?)?,
            ring: RingBuf::try_from(typed(names::CAPTURE_RING)?)?,
        })
    }

    /// The filter the programs sample by now (`on == 0`: none).
    pub fn filter(&self) -> Result<CaptureFilter> {
        self.filter.get(&0, 0).context("reading the capture flag")
    }

    /// Turns sampling on with `filter`, or off with the default.
    pub fn set_filter(&mut self, filter: &CaptureFilter) -> Result<()> {
        self.filter
            .set(0, *filter, 0)
            .context("writing the capture flag")
    }

    /// Zeroes every CPU's counts and rate window.
    pub fn reset_stats(&mut self) -> Result<()> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting the possible CPUs")?;
        let zero = PerCpuValues::try_from(vec![CaptureStats::default(); cpus])
            .context("building empty capture counts")?;
        self.stats
            .set(0, zero, 0)
            .context("resetting the capture counts")
    }

    /// The counts summed over CPUs.
    pub fn stats(&self) -> Result<CaptureStats> {
        let per_cpu = self
            .stats
            .get(&0, 0)
            .context("reading the capture counts")?;
        Ok(per_cpu.iter().fold(CaptureStats::default(), |mut sum, s| {
            sum.matched += s.matched;
            sum.written += s.written;
            sum.skipped += s.skipped;
            sum.lost += s.lost;
            sum
        }))
    }

    /// The next sample waiting in the ring buffer.
    pub fn next_sample(&mut self) -> Option<Sampled> {
        let item = self.ring.next()?;
        let word = |at: usize| u32::from_ne_bytes(item[at..at + 4].try_into().unwrap_or_default());
        if item.len() < SAMPLE_HEADER {
            return None;
        }
        let caplen = (word(12) as usize).min(item.len() - SAMPLE_HEADER);
        let flags = word(20);
        Some(Sampled {
            ts_ns: u64::from_ne_bytes(item[0..8].try_into().unwrap_or_default()),
            len: word(8),
            reason: word(16),
            outbound: flags & SAMPLE_OUT != 0,
            dropped: flags & SAMPLE_DROP != 0,
            data: item[SAMPLE_HEADER..SAMPLE_HEADER + caplen].to_vec(),
        })
    }

    /// The ring buffer's descriptor, readable when samples wait.
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// A process's start time (clock ticks after boot, /proc/PID/stat field
/// 22), or `None` when it is gone.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Whether the process that set `filter` still runs.
pub fn reader_alive(filter: &CaptureFilter) -> bool {
    filter.reader_pid != 0 && process_start(filter.reader_pid) == Some(filter.reader_start)
}
