//! This process's own figures for the standard `process_*` metrics
//! (docs/metrics.md), read from /proc as Prometheus' client libraries do.
use anyhow::{Context as _, Result};

pub struct ProcessStats {
    /// Unix time the process started, in seconds.
    pub start_time: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
}

impl ProcessStats {
    pub fn read() -> Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        // The command name (field 2) is in parentheses and may hold spaces
        // or parentheses itself: the fields after it start past the last ')'.
        let after_comm = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("/proc/self/stat has no command name")?;
        // Field 3 (state) is the first after the name; starttime is field 22
        // and rss field 24 (proc(5)).
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            fields
                .get(n - 3)
                .context("/proc/self/stat is short")?
                .parse()
                .with_context(|| format!("field {n} of /proc/self/stat"))
        };
        let (start_ticks, rss_pages) = (field(22)?, field(24)?);
        let proc_stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let boot_time: u64 = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .context("/proc/stat has no btime")?
            .trim()
            .parse()
            .context("btime in /proc/stat")?;
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .context("listing /proc/self/fd")?
            .count() as u64;
        Ok(ProcessStats {
            start_time: boot_time as f64 + start_ticks as f64 / ticks.max(1) as f64,
            resident_bytes: rss_pages * page.max(1) as u64,
            open_fds,
        })
    }
}
