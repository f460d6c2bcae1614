//! Runs frames through the real XDP program with BPF_PROG_TEST_RUN, nothing
//! attached, and reports the verdict and which counters moved. Used by
//! `sipwall check` and by the packet-table tests.
use anyhow::{Context as _, Result};
use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
    Ebpf,
};
use filter_common::{Counter, CounterFamily, OutReason, Reason};

use filter_policy::ruleset::Ruleset;

use crate::{iface::LinkHeader, maps::Maps, program};

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

/// One frame's run: the verdict and every counter of the program's family
/// that changed (`Reason` for the XDP program, `OutReason` for egress).
#[derive(Clone, Debug)]
pub struct Outcome<F = Reason> {
    pub verdict: Verdict,
    /// (reason, packets and bytes added) for each counter that moved.
    pub moved: Vec<(F, Counter)>,
}

/// One outgoing frame's run through the TC egress program.
pub type OutOutcome = Outcome<OutReason>;

impl<F: CounterFamily> Outcome<F> {
    /// The reason when exactly one counter moved by exactly one packet.
    pub fn reason(&self) -> Option<F> {
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
        Runner::of_object(program::PROGRAM_OBJECT, ruleset, link)
    }

    /// The program built without calls mode's code (the bench's
    /// reference for range mode); only release builds embed it.
    pub fn range_only(ruleset: &Ruleset) -> Result<Runner> {
        anyhow::ensure!(
            !program::RANGE_ONLY_OBJECT.is_empty(),
            "the program without calls mode is built only in release builds"
        );
        Runner::of_object(program::RANGE_ONLY_OBJECT, ruleset, LinkHeader::Ethernet)
    }

    /// Another build of the program's object (the bench's `--candidate`),
    /// for Ethernet frames.
    pub fn with_object(object: &[u8], ruleset: &Ruleset) -> Result<Runner> {
        Runner::of_object(object, ruleset, LinkHeader::Ethernet)
    }

    fn of_object(object: &[u8], ruleset: &Ruleset, link: LinkHeader) -> Result<Runner> {
        let mut ebpf = program::load_object(object, None)?;
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

    /// The capture's maps of this copy (the bench turns sampling on and off).
    pub fn capture_maps(&mut self) -> Result<crate::capture::CaptureMaps> {
        crate::capture::CaptureMaps::take(&mut self.ebpf)
    }

    /// The media maps of this copy (calls mode's pinholes and heartbeat).
    pub fn media_maps(&mut self) -> Result<crate::media::MediaMaps> {
        crate::media::MediaMaps::take(&mut self.ebpf)
    }

    /// The ring of signalling copies of this copy (calls mode).
    pub fn copy_ring(&mut self) -> Result<crate::media::CopyRing> {
        crate::media::CopyRing::take(&mut self.ebpf)
    }

    /// A second handle on this copy's array map `name`, for tests that
    /// write slots the typed maps only fill their own way (a pinhole last
    /// seen long ago, a stale heartbeat). Ask before [`Runner::media_maps`]
    /// takes the media maps out of the object.
    pub fn array_handle(&self, name: &str) -> Result<aya::maps::MapData> {
        let Some(aya::maps::Map::Array(data)) = self.ebpf.map(name) else {
            anyhow::bail!("the program has no array map {name} (taken already?)");
        };
        let id = data
            .info()
            .with_context(|| format!("reading map {name}'s info"))?
            .id();
        aya::maps::MapData::from_id(id).with_context(|| format!("opening map {name} by its id"))
    }

    /// Installs another ruleset (the atomic swap a live filter uses).
    pub fn install(&mut self, ruleset: &Ruleset) -> Result<()> {
        self.maps.install(ruleset).map(|_| ())
    }

    /// Runs one frame through the program.
    pub fn run(&self, frame: &[u8]) -> Result<Outcome> {
        self.judge(Maps::counters, || {
            Ok(Verdict::from_action(self.test_run(frame, 1)?))
        })
    }

    /// Runs one frame `repeat` times in the kernel and returns the action
    /// and the mean time per run in nanoseconds.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        timed_run(program::program(&self.ebpf)?, frame, repeat).context("BPF_PROG_TEST_RUN")
    }

    /// The loaded XDP program (the bench hands it frames by tail call).
    pub fn program(&self) -> Result<&Xdp> {
        program::program(&self.ebpf)
    }

    /// The loaded TC egress program (the complexity test reads its figures).
    pub fn egress_program(&self) -> Result<&SchedClassifier> {
        program::egress(&self.ebpf)
    }

    /// Runs one outgoing frame through the TC egress program; returns its
    /// action (-1: hand on) and the mean time per run in nanoseconds.
    pub fn egress(&self, frame: &[u8], repeat: u32) -> Result<(i32, f64)> {
        let (action, ns) = timed_run(program::egress(&self.ebpf)?, frame, repeat)
            .context("BPF_PROG_TEST_RUN on TC")?;
        Ok((action as i32, ns))
    }

    /// Runs one outgoing frame through the TC egress program.
    pub fn run_out(&self, frame: &[u8]) -> Result<OutOutcome> {
        self.judge(Maps::out_counters, || {
            Ok(Verdict::from_tc_action(self.egress(frame, 1)?.0))
        })
    }

    /// Runs a frame with `run`, and tells which counters of the family
    /// `read` reads it moved.
    fn judge<F: CounterFamily>(
        &self,
        read: fn(&Maps) -> Result<F::Set>,
        run: impl FnOnce() -> Result<Verdict>,
    ) -> Result<Outcome<F>> {
        let before = read(&self.maps)?;
        let verdict = run()?;
        let after = read(&self.maps)?;
        Ok(Outcome {
            verdict,
            moved: diff(&before, &after),
        })
    }

    fn test_run(&self, frame: &[u8], repeat: u32) -> Result<u32> {
        Ok(self.time(frame, repeat)?.0)
    }
}

/// Runs `frame` through a program `repeat` times (BPF_PROG_TEST_RUN):
/// its return value and the mean time per run in nanoseconds.
fn timed_run<P>(prog: &P, frame: &[u8], repeat: u32) -> Result<(u32, f64)>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = repeat;
    let r = prog.test_run(opts)?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

/// The counters that moved between two readings of one family.
fn diff<F: CounterFamily>(before: &F::Set, after: &F::Set) -> Vec<(F, Counter)> {
    F::MEMBERS
        .iter()
        .filter_map(|&r| {
            let slot = r.index() as usize;
            let (b, a) = (before.as_ref()[slot], after.as_ref()[slot]);
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
