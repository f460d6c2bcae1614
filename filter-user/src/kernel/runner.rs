//! Runs frames through the real XDP program with BPF_PROG_TEST_RUN, nothing
//! attached, and reports the verdict and which counters moved. Used by
//! `sipwall check` and by the packet-table tests.
use anyhow::{Context as _, Result};
use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use filter_common::{Counter, OutReason, Reason};

use crate::{
    kernel::{
        iface::LinkHeader,
        maps::{CounterSet, Maps, OutCounterSet},
        program,
    },
    policy::ruleset::Ruleset,
};

/// What the program returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// XDP_ABORTED, XDP_TX, XDP_REDIRECT or anything else: never expected.
    Other(u32),
}

impl Verdict {
    fn from_action(action: u32) -> Verdict {
        match action {
            2 => Verdict::Pass,
            1 => Verdict::Drop,
            n => Verdict::Other(n),
        }
    }

    /// The verdict of a TC action: TC_ACT_UNSPEC (-1, hand on) and
    /// TC_ACT_OK pass, TC_ACT_SHOT (2) drops.
    fn from_tc_action(action: i32) -> Verdict {
        match action {
            -1 | 0 => Verdict::Pass,
            2 => Verdict::Drop,
            n => Verdict::Other(n as u32),
        }
    }

    pub fn name(self) -> String {
        match self {
            Verdict::Pass => "pass".into(),
            Verdict::Drop => "drop".into(),
            Verdict::Other(0) => "aborted".into(),
            Verdict::Other(n) => format!("action{n}"),
        }
    }
}

/// One frame's run: the verdict and every counter that changed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    /// (reason, packets and bytes added) for each counter that moved.
    pub moved: Vec<(Reason, Counter)>,
}

impl Outcome {
    /// The reason when exactly one counter moved by exactly one packet.
    pub fn reason(&self) -> Option<Reason> {
        match self.moved.as_slice() {
            [(r, c)] if c.packets == 1 => Some(*r),
            _ => None,
        }
    }
}

/// One outgoing frame's run through the TC egress program.
#[derive(Clone, Debug)]
pub struct OutOutcome {
    pub verdict: Verdict,
    /// (reason, packets and bytes added) for each egress counter that moved.
    pub moved: Vec<(OutReason, Counter)>,
}

impl OutOutcome {
    /// The reason when exactly one counter moved by exactly one packet.
    pub fn reason(&self) -> Option<OutReason> {
        match self.moved.as_slice() {
            [(r, c)] if c.packets == 1 => Some(*r),
            _ => None,
        }
    }
}

pub struct Runner {
    ebpf: Ebpf,
    pub maps: Maps,
}

/// Smallest frame BPF_PROG_TEST_RUN accepts for XDP (an Ethernet header).
pub const MIN_FRAME: usize = 14;
/// Largest frame it accepts without multi-buffer support: a page less the
/// XDP headroom and the shared-info tailroom.
pub const MAX_FRAME: usize = 3520;

impl Runner {
    /// Loads the program with private maps and installs `ruleset`, for
    /// Ethernet frames.
    pub fn new(ruleset: &Ruleset) -> Result<Runner> {
        Runner::on_link(ruleset, LinkHeader::Ethernet)
    }

    /// The same for frames that start with `link` (an L3 device's begin
    /// with the IP header).
    pub fn on_link(ruleset: &Ruleset, link: LinkHeader) -> Result<Runner> {
        let mut ebpf = program::load(None)?;
        let mut maps = Maps::take(&mut ebpf)?;
        maps.set_link(link);
        maps.install(ruleset)?;
        // Entering strict mode seeds the flow map from this process's
        // socket table: a replay knows no flows of the host it judges for.
        maps.clear_flows()?;
        Ok(Runner { ebpf, maps })
    }

    /// Loads a second copy of the program on the maps pinned in `dir` by a
    /// running attachment: frames run through it are judged by the live
    /// policy (and counted on the live counters). Nothing is installed.
    pub fn from_pins(dir: &std::path::Path) -> Result<Runner> {
        let mut ebpf = program::load(Some(dir))?;
        let maps = Maps::take(&mut ebpf)?;
        Ok(Runner { ebpf, maps })
    }

    /// Installs another ruleset (the atomic swap a live filter uses).
    pub fn install(&mut self, ruleset: &Ruleset) -> Result<()> {
        self.maps.install(ruleset).map(|_| ())
    }

    /// Runs one frame through the program.
    pub fn run(&self, frame: &[u8]) -> Result<Outcome> {
        let before = self.maps.counters()?;
        let action = self.test_run(frame, 1)?;
        let after = self.maps.counters()?;
        Ok(Outcome {
            verdict: Verdict::from_action(action),
            moved: diff(&before, &after),
        })
    }

    /// Runs one frame `repeat` times in the kernel and returns the action
    /// and the mean time per run in nanoseconds.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let prog = program::program(&self.ebpf)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    /// The loaded XDP program (the bench hands it frames by tail call).
    pub fn program(&self) -> Result<&Xdp> {
        program::program(&self.ebpf)
    }

    /// Runs one outgoing frame through the TC egress program; returns its
    /// action (-1: hand on) and the mean time per run in nanoseconds.
    pub fn egress(&self, frame: &[u8], repeat: u32) -> Result<(i32, f64)> {
        let prog = program::egress(&self.ebpf)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN on TC")?;
        Ok((r.return_value as i32, r.duration.as_nanos() as f64))
    }

    /// Runs one outgoing frame through the TC egress program.
    pub fn run_out(&self, frame: &[u8]) -> Result<OutOutcome> {
        let before = self.maps.out_counters()?;
        let (action, _) = self.egress(frame, 1)?;
        let after = self.maps.out_counters()?;
        Ok(OutOutcome {
            verdict: Verdict::from_tc_action(action),
            moved: diff_out(&before, &after),
        })
    }

    fn test_run(&self, frame: &[u8], repeat: u32) -> Result<u32> {
        Ok(self.time(frame, repeat)?.0)
    }
}

fn diff(before: &CounterSet, after: &CounterSet) -> Vec<(Reason, Counter)> {
    Reason::ALL
        .into_iter()
        .filter_map(|r| {
            let (b, a) = (before[r as usize], after[r as usize]);
            (a != b).then(|| {
                (
                    r,
                    Counter {
                        packets: a.packets.wrapping_sub(b.packets),
                        bytes: a.bytes.wrapping_sub(b.bytes),
                    },
                )
            })
        })
        .collect()
}

fn diff_out(before: &OutCounterSet, after: &OutCounterSet) -> Vec<(OutReason, Counter)> {
    OutReason::ALL
        .into_iter()
        .filter_map(|r| {
            let (b, a) = (before[r as usize], after[r as usize]);
            (a != b).then(|| {
                (
                    r,
                    Counter {
                        packets: a.packets.wrapping_sub(b.packets),
                        bytes: a.bytes.wrapping_sub(b.bytes),
                    },
                )
            })
        })
        .collect()
}
