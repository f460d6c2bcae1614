//! The figures only the call reader inside `sipwall run` knows (the calls
//! it follows, how fast it opens pinholes), shared with the metrics
//! endpoint of the same process. The reader takes its interface's handle
//! with [`for_iface`] and fills it; `metrics::render` shows the
//! `sipwall_calls_active` and `sipwall_pinhole_install_seconds` series of
//! every interface that has one (docs/metrics.md). `run`'s scrape renders
//! through `metrics::render`, so the reader needs nothing else:
//!
//! ```ignore
//! let figures = media_metrics::for_iface(&iface);
//! figures.set_calls_active(reader.calls_active() as u64);
//! figures.observe_install_since(copy.ts_ns); // or observe_install(secs)
//! ```
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use filter_kernel::maps::monotonic_ns;

/// `sipwall_pinhole_install_seconds`' upper bounds, in seconds.
pub const INSTALL_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// A Prometheus histogram of fixed buckets, written without a lock.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not cumulative; summed when
    /// rendered), then one for those above the last.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of the observations, as f64 bits.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        // A NaN or negative time (clocks the reader misread) counts as 0:
        // the observation is kept, never a poisoned sum.
        let value = if value.is_finite() && value > 0.0 {
            value
        } else {
            0.0
        };
        let at = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels`
    /// (`key="value"` pairs, no braces).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        // The count is the +Inf bucket's, read once, so the two agree even
        // while observations land.
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// What the call reader of one interface reports.
#[derive(Debug)]
pub struct MediaMetrics {
    calls_active: AtomicU64,
    install: Histogram,
}

impl Default for MediaMetrics {
    fn default() -> Self {
        MediaMetrics {
            calls_active: AtomicU64::new(0),
            install: Histogram::new(&INSTALL_BUCKETS),
        }
    }
}

impl MediaMetrics {
    /// The calls the reader follows now (`sipwall_calls_active`).
    pub fn set_calls_active(&self, n: u64) {
        self.calls_active.store(n, Ordering::Relaxed);
    }

    /// One pinhole written `secs` after the kernel saw the packet whose
    /// SDP asked for it (`sipwall_pinhole_install_seconds`).
    pub fn observe_install(&self, secs: f64) {
        self.install.observe(secs);
    }

    /// [`MediaMetrics::observe_install`] from the copy's `ts_ns`
    /// (CLOCK_MONOTONIC, `bpf_ktime_get_ns`) to now.
    pub fn observe_install_since(&self, ts_ns: u64) {
        let secs = monotonic_ns().saturating_sub(ts_ns) as f64 / 1e9;
        self.observe_install(secs);
    }

    /// The histogram's lines (`metrics::render`).
    pub fn render_install(&self, out: &mut String, name: &str, labels: &str) {
        self.install.render(out, name, labels);
    }

    pub fn calls_active(&self) -> u64 {
        self.calls_active.load(Ordering::Relaxed)
    }
}

fn registry() -> &'static Mutex<BTreeMap<String, Arc<MediaMetrics>>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<String, Arc<MediaMetrics>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The handle of `iface`'s call reader in this process, made on first use:
/// from then on the metrics of this process show its series. A reader
/// started again (a reload) gets the same handle, so the histogram keeps
/// counting.
pub fn for_iface(iface: &str) -> Arc<MediaMetrics> {
    let mut all = registry().lock().unwrap_or_else(|e| e.into_inner());
    all.entry(iface.to_string()).or_default().clone()
}

/// The handle of `iface`, if a reader of this process registered one.
pub fn get(iface: &str) -> Option<Arc<MediaMetrics>> {
    let all = registry().lock().unwrap_or_else(|e| e.into_inner());
    all.get(iface).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_agree_with_the_count() {
        let h = Histogram::new(&INSTALL_BUCKETS);
        for v in [0.00005, 0.0003, 0.0003, 0.02, 3.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "iface=\"eth0\"");
        let get = |le: &str| -> u64 {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("x_bucket{{iface=\"eth0\",le=\"{le}\"}}")))
                .unwrap_or_else(|| panic!("no le={le}: {out}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        // NaN and -1 count as 0, in the first bucket.
        assert_eq!(get("0.0001"), 3);
        assert_eq!(get("0.0005"), 5);
        assert_eq!(get("0.05"), 6);
        assert_eq!(get("1"), 6);
        assert_eq!(get("+Inf"), 7);
        assert!(out.contains("x_count{iface=\"eth0\"} 7\n"), "{out}");
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("x_sum{iface=\"eth0\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 3.02065).abs() < 1e-9, "{out}");
    }

    #[test]
    fn a_handle_is_one_per_interface() {
        let a = for_iface("media-metrics-test0");
        a.set_calls_active(3);
        assert_eq!(for_iface("media-metrics-test0").calls_active(), 3);
        assert!(get("media-metrics-test1").is_none());
    }
}
