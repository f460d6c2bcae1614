//! One interface's state, gathered once and told truthfully: the pinned
//! attachment's record, ruleset and counters, checked against what the
//! kernel runs on the interface now. `stats`, `status` and the metrics all
//! render this one type.
use filter_common::{
    media::{MediaState, MediaStats, READER_TIMEOUT_NS},
    XdpMode,
};

use filter_kernel::{
    attachment::Attachment,
    bans::Ban,
    iface::{foreign_program, if_index, iface_xdp, link_of, LinkHeader},
    links::open_link,
    maps::{monotonic_ns, CounterSet, OutCounterSet},
    media::MediaMaps,
    pins::{read_info, PinRoot, EGRESS_LINK_PIN, LINK_PIN},
};
use filter_policy::ruleset::Ruleset;

pub struct Snapshot {
    pub iface: String,
    /// The kernel runs sipwall's program on the interface.
    pub attached: bool,
    /// The mode attached in (from the pins, else from the kernel).
    pub mode: &'static str,
    pub program_id: Option<u32>,
    /// What the programs expect the interface's frames to start with (read
    /// with the ruleset).
    pub link: Option<LinkHeader>,
    /// The ruleset packets are judged by; `None` when the maps could not be
    /// read (see `unreadable`).
    pub ruleset: Option<Ruleset>,
    pub counters: Option<CounterSet>,
    /// The TC egress program's counters (read with `counters`).
    pub out_counters: Option<OutCounterSet>,
    /// The ban set's entries, expired ones included (read with `counters`).
    pub bans: Option<Vec<Ban>>,
    /// Calls mode's state (read with `counters`).
    pub media: Option<MediaSnapshot>,
    /// Why the maps could not be read, when they could not.
    pub unreadable: Option<anyhow::Error>,
    /// What is wrong, each with what to do about it.
    pub problems: Vec<String>,
}

impl Snapshot {
    /// Gathers everything about `iface`'s attachment. Never fails: what
    /// cannot be read is a problem in the result.
    pub fn gather(root: &PinRoot, iface: &str) -> Snapshot {
        Snapshot::gather_with(root, iface, true)
    }

    /// Only whether `iface`'s attachment filters, and its problems: what
    /// the kernel runs, without reading the maps (a command about to read
    /// or change them itself checks first with this).
    pub fn liveness(root: &PinRoot, iface: &str) -> Snapshot {
        Snapshot::gather_with(root, iface, false)
    }

    fn gather_with(root: &PinRoot, iface: &str, read_maps: bool) -> Snapshot {
        let dir = root.iface_dir(iface);
        let mut snap = Snapshot {
            iface: iface.to_string(),
            attached: false,
            mode: "unknown",
            program_id: None,
            link: None,
            ruleset: None,
            counters: None,
            out_counters: None,
            bans: None,
            media: None,
            unreadable: None,
            problems: Vec::new(),
        };
        let recorded_index = if read_maps {
            snap.read_maps(root, iface)
        } else {
            read_info(&dir).ok().map(|info| info.ifindex)
        };
        snap.check_kernel(root, iface, recorded_index);
        snap
    }

    /// Reads the ruleset and counters; returns the interface index the
    /// pins recorded. Without a readable INFO map the maps are not read
    /// (they may be of another layout), but what the kernel runs is still
    /// told.
    fn read_maps(&mut self, root: &PinRoot, iface: &str) -> Option<u32> {
        let snap = self;
        let mut recorded_index = None;
        match Attachment::open_resolved(root, iface.to_string()) {
            Ok(att) => {
                snap.mode = att.mode_name();
                recorded_index = Some(att.info.ifindex);
                let read = att.maps.read_ruleset().and_then(|r| {
                    Ok((
                        r,
                        att.maps.counters()?,
                        att.maps.out_counters()?,
                        att.maps.bans()?,
                        att.maps.link_header()?,
                    ))
                });
                match read {
                    Ok((ruleset, counters, out_counters, bans, link)) => {
                        snap.link = Some(link);
                        snap.ruleset = Some(ruleset);
                        snap.counters = Some(counters);
                        snap.out_counters = Some(out_counters);
                        snap.bans = Some(bans);
                    }
                    Err(e) => snap.unreadable(e, iface, true),
                }
                if let Some(r) = &snap.ruleset {
                    match MediaSnapshot::read(&att.dir, r) {
                        Ok(m) => snap.media = Some(m),
                        Err(e) => snap.problems.push(format!(
                            "{e:#}; `sipwall attach -i {iface}` recreates missing pins"
                        )),
                    }
                }
            }
            Err(e) => snap.unreadable(e, iface, false),
        }
        recorded_index
    }

    /// What the kernel runs on `iface`, against the pinned link.
    fn check_kernel(&mut self, root: &PinRoot, iface: &str, recorded_index: Option<u32>) {
        let snap = self;
        let dir = root.iface_dir(iface);
        let link_prog = open_link(&dir.join(LINK_PIN)).map(|(_, prog)| prog);
        snap.program_id = link_prog;
        match if_index(iface) {
            Err(_) => snap.problems.push(format!(
                "interface {iface} no longer exists; its pins remain: `sipwall detach -i {iface}` removes them, or attach again when it is back"
            )),
            Ok(index) => {
                if let Some(then) = recorded_index.filter(|&then| then != index) {
                    snap.problems.push(format!(
                        "{iface} was deleted and created again (index {then} then, {index} now)"
                    ));
                }
                if let Some(problem) = snap.link.and_then(|read| link_problem(iface, read)) {
                    snap.problems.push(problem);
                }
                match (iface_xdp(iface), link_prog) {
                    (Ok(Some(now)), Some(ours)) if now.program_id == ours => {
                        snap.attached = true;
                        if recorded_index.is_none() {
                            snap.mode = now.mode.map_or("unknown", XdpMode::name);
                        }
                    }
                    (Ok(Some(now)), _) => {
                        snap.problems.push(foreign_program(iface, now, root.path()))
                    }
                    (Ok(None), _) => snap.problems.push(format!(
                        "no XDP program on {iface}: sipwall is NOT filtering; `sipwall attach -i {iface}` attaches it again"
                    )),
                    (Err(e), _) => snap.problems.push(format!("{e:#}")),
                }
            }
        }
        if link_prog.is_none() {
            snap.problems.push(format!(
                "the pinned XDP link is missing or unreadable ({}); `sipwall attach -i {iface}` repairs it",
                dir.join(LINK_PIN).display()
            ));
        }
        let strict = snap.ruleset.as_ref().is_some_and(|r| r.strict());
        let egress_strict = snap.ruleset.as_ref().is_some_and(|r| r.egress.strict());
        if (strict || egress_strict) && open_link(&dir.join(EGRESS_LINK_PIN)).is_none() {
            snap.problems.push(if egress_strict {
                format!(
                    "strict egress without its TC egress program: outgoing packets are NOT filtered; `sipwall attach -i {iface}` attaches it again"
                )
            } else {
                format!(
                    "strict mode without its TC egress program: the host's own connections get no replies; `sipwall attach -i {iface}` attaches it again"
                )
            });
        }
    }

    /// Records why the maps could not be read, as a problem with what to do.
    /// A damaged or foreign INFO record says what to do itself; a map that
    /// will not open or read (`after_info`) gets the repair hint.
    fn unreadable(&mut self, e: anyhow::Error, iface: &str, after_info: bool) {
        self.problems.push(if after_info {
            format!(
                "{e:#}; `sipwall attach -i {iface}` recreates missing pins, `sipwall detach -i {iface}` removes damaged ones"
            )
        } else {
            format!("{e:#}")
        });
        self.unreadable = Some(e);
    }

    /// The error that kept the ruleset and counters from being read, for
    /// commands that have nothing to show without them.
    pub fn check_readable(&mut self) -> anyhow::Result<()> {
        match self.unreadable.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Calls mode's state of one attachment, read from its media maps.
#[derive(Clone, Copy, Debug)]
pub struct MediaSnapshot {
    /// The policy's `[media] mode` is `calls`.
    pub calls: bool,
    /// The reader's last heartbeat and pid.
    pub reader: MediaState,
    /// Signalling copies written and lost.
    pub stats: MediaStats,
    /// Pinholes the kernel passes media through now (0 in range mode,
    /// where it passes none).
    pub pinholes_active: usize,
    /// CLOCK_MONOTONIC when read.
    pub now_ns: u64,
}

impl MediaSnapshot {
    pub fn read(dir: &std::path::Path, ruleset: &Ruleset) -> anyhow::Result<MediaSnapshot> {
        let maps = MediaMaps::open(dir)?;
        let calls = ruleset.media.calls();
        // Range mode reads no pinhole: the scan of every slot is skipped.
        let pinholes_active = if calls {
            maps.live_count(ruleset.media.call_idle_secs * 1_000_000_000)
        } else {
            0
        };
        Ok(MediaSnapshot {
            calls,
            reader: maps.reader()?,
            stats: maps.stats()?,
            pinholes_active,
            now_ns: monotonic_ns(),
        })
    }

    /// The reader wrote its heartbeat less than 5 s ago (the kernel's
    /// own test for `[media] unattended`).
    pub fn reader_up(&self) -> bool {
        self.reader.heartbeat_ns != 0
            && (self.now_ns.wrapping_sub(self.reader.heartbeat_ns) as i64)
                < READER_TIMEOUT_NS as i64
    }

    /// The last reader's pid, if one ever ran.
    pub fn reader_pid(&self) -> Option<u32> {
        (self.reader.reader_pid != 0).then_some(self.reader.reader_pid)
    }
}

/// What is wrong when the programs read `iface`'s frames as starting with
/// `read` but the interface's link type says otherwise (an attachment of a
/// version that read every link as Ethernet, or a device whose type
/// changed): its packets are misread.
fn link_problem(iface: &str, read: LinkHeader) -> Option<String> {
    let link = link_of(iface).ok()?;
    match link.header() {
        Ok(expected) if expected == read => None,
        Ok(expected) => Some(format!(
            "the filter reads {iface}'s frames as starting with {}, but {iface} ({}) starts them with {}: its packets are misread; `sipwall attach -i {iface}` sets it right",
            read.describe(),
            link.describe(),
            expected.describe()
        )),
        Err(why) => Some(format!(
            "sipwall cannot filter {iface}: it is {why}; `sipwall detach -i {iface}` removes the filter"
        )),
    }
}

/// Warns on stderr when `snap`'s attachment does not filter (interface gone,
/// program not running, another program there): what `stats`, `top` and
/// `allow` show is then not what packets meet.
pub fn warn_if_stale(snap: &Snapshot) {
    if !snap.attached {
        eprintln!(
            "sipwall: warning: {} is NOT filtering: {}",
            snap.iface,
            snap.problems.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(heartbeat_ns: u64, now_ns: u64) -> MediaSnapshot {
        MediaSnapshot {
            calls: true,
            reader: MediaState {
                heartbeat_ns,
                reader_pid: 7,
                reserved: 0,
            },
            stats: MediaStats::default(),
            pinholes_active: 0,
            now_ns,
        }
    }

    #[test]
    fn the_reader_is_up_while_its_heartbeat_is_under_5_s_old() {
        let s = 1_000_000_000;
        assert!(media(100 * s, 101 * s).reader_up());
        assert!(media(100 * s, 104 * s).reader_up());
        assert!(!media(100 * s, 105 * s).reader_up());
        assert!(!media(100 * s, 200 * s).reader_up());
        // Never ran (or stopped cleanly): no heartbeat at all.
        assert!(!media(0, 2 * s).reader_up());
        assert_eq!(media(0, 2 * s).reader_pid(), Some(7));
        let mut none = media(0, 2 * s);
        none.reader.reader_pid = 0;
        assert_eq!(none.reader_pid(), None);
    }
}
