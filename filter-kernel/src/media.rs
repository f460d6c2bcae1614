//! Calls mode's maps of one attachment (docs/pins.md): the pinholes, their
//! packet counts, the Call-IDs behind them, the reader's heartbeat, and the
//! ring of signalling copies.
use std::{
    net::{IpAddr, Ipv6Addr},
    os::fd::{AsFd as _, AsRawFd, RawFd},
    path::Path,
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf};
use filter_common::media::{
    maps as names, pinhole_slot, CallId, MediaState, MediaStats, Pinhole, CALL_ID_MAX, COPY_HEADER,
    COPY_L3, COPY_OUT, PINHOLE_ADDR, PINHOLE_ANY, PINHOLE_EMPTY, PINHOLE_SLOTS, PINHOLE_WAYS,
};

use crate::{capture::pinned, maps::monotonic_ns};

/// One pinhole as `pinhole list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinholeEntry {
    pub port: u16,
    /// `None`: open to any source (an offer not answered yet).
    pub remote: Option<IpAddr>,
    pub call_id: Option<String>,
    pub opened_ns: u64,
    pub last_seen_ns: u64,
    /// Media packets that matched it, summed over CPUs.
    pub packets: u64,
    /// Whether the kernel still passes media through it.
    pub live: bool,
}

/// One signalling copy read from the ring.
#[derive(Clone, Debug)]
pub struct Copied {
    pub ts_ns: u64,
    /// The packet's length on the wire; more than `data.len()` when cut.
    pub len: u32,
    /// Sent by the host (else received).
    pub outbound: bool,
    /// The frame starts with the IP header.
    pub l3: bool,
    pub data: Vec<u8>,
}

/// The remote address as the programs compare it: 16 bytes, IPv4 as
/// `::ffff:a.b.c.d`, as two native words in memory order.
pub fn remote_words(addr: IpAddr) -> [u64; 2] {
    let bytes = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    let (hi, lo) = bytes.split_at(8);
    [
        u64::from_ne_bytes(hi.try_into().unwrap_or_default()),
        u64::from_ne_bytes(lo.try_into().unwrap_or_default()),
    ]
}

fn remote_addr(words: [u64; 2]) -> IpAddr {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&words[0].to_ne_bytes());
    bytes[8..].copy_from_slice(&words[1].to_ne_bytes());
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The pinholes array, mapped into this process: slots are read and
/// written in place, in an order the programs can never misread.
struct Mapped {
    ptr: NonNull<Pinhole>,
    len: usize,
}

impl Mapped {
    fn new(map: &MapData) -> Result<Mapped> {
        let len = PINHOLE_SLOTS as usize;
        let bytes = len * std::mem::size_of::<Pinhole>();
        // SAFETY: a fresh shared mapping of the whole array (created with
        // BPF_F_MMAPABLE); the kernel refuses a range beyond the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the PINHOLES array");
        }
        let ptr = NonNull::new(ptr.cast::<Pinhole>()).context("mmap returned null")?;
        Ok(Mapped { ptr, len })
    }

    fn get(&self, slot: u32) -> Pinhole {
        assert!((slot as usize) < self.len);
        // SAFETY: within the mapping; a volatile read, since the programs
        // write `last_seen_ns` at any time.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(slot as usize)) }
    }

    /// Fills a free slot: everything but `kind` first, then `kind`, so a
    /// program that sees the new kind sees the rest too.
    fn fill(&self, slot: u32, p: Pinhole) {
        assert!((slot as usize) < self.len);
        // SAFETY: within the mapping; the programs only read these fields
        // (and store `last_seen_ns`, which this sets anew).
        unsafe {
            let at = self.ptr.as_ptr().add(slot as usize);
            std::ptr::write_volatile(&mut (*at).kind, PINHOLE_EMPTY);
            fence(Ordering::SeqCst);
            std::ptr::write_volatile(&mut (*at).remote, p.remote);
            std::ptr::write_volatile(&mut (*at).last_seen_ns, p.last_seen_ns);
            std::ptr::write_volatile(&mut (*at).opened_ns, p.opened_ns);
            std::ptr::write_volatile(&mut (*at).call, p.call);
            fence(Ordering::SeqCst);
            std::ptr::write_volatile(&mut (*at).kind, p.kind);
        }
    }

    fn clear(&self, slot: u32) {
        assert!((slot as usize) < self.len);
        // SAFETY: within the mapping; `kind` alone decides whether the
        // programs use the slot.
        unsafe {
            std::ptr::write_volatile(
                &mut (*self.ptr.as_ptr().add(slot as usize)).kind,
                PINHOLE_EMPTY,
            )
        };
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len * std::mem::size_of::<Pinhole>(),
            )
        };
    }
}

// SAFETY: the mapping is plain shared memory; every access is a volatile
// read or write of whole fields.
unsafe impl Send for Mapped {}

/// The pinholes and their bookkeeping.
pub struct MediaMaps {
    pinholes: Mapped,
    packets: PerCpuArray<MapData, u64>,
    state: Array<MapData, MediaState>,
    stats: PerCpuArray<MapData, MediaStats>,
    call_ids: HashMap<MapData, u32, CallId>,
    /// The pin directory, opened to lock out the other writers of the
    /// pinholes (the reader of `run`, `pinhole add`/`del`) while one picks
    /// a way and writes it; `None` for private maps, which have one.
    writers: Option<std::fs::File>,
}

/// Holds the pinholes' writer lock (an exclusive `flock` of the pin
/// directory, by its descriptor in `MediaMaps::writers`, which outlives
/// the guard) until dropped.
struct WriterLock(Option<RawFd>);

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Some(fd) = self.0 {
            // SAFETY: flock on the pin directory's open descriptor.
            unsafe { libc::flock(fd, libc::LOCK_UN) };
        }
    }
}

/// The ring of signalling copies, read by the reader alone.
pub struct CopyRing {
    ring: RingBuf<MapData>,
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(map: Map, name: &str) -> Result<T> {
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
}

impl MediaMaps {
    /// Opens the media maps of the attachment pinned in `dir`.
    pub fn open(dir: &Path) -> Result<MediaMaps> {
        let mut maps = MediaMaps::build(|name| pinned(dir, name))?;
        maps.writers = Some(
            std::fs::File::open(dir)
                .with_context(|| format!("opening {} to lock its pinholes", dir.display()))?,
        );
        Ok(maps)
    }

    /// Waits for the other writers of the pinholes (see `writers`).
    fn lock_writers(&self) -> Result<WriterLock> {
        let fd = self.writers.as_ref().map(|dir| dir.as_raw_fd());
        if let Some(fd) = fd {
            // SAFETY: flock on an open descriptor of the pin directory.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("locking the pinholes against other writers");
            }
        }
        Ok(WriterLock(fd))
    }

    /// Takes the media maps out of a loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<MediaMaps> {
        MediaMaps::build(|name| {
            ebpf.take_map(name)
                .with_context(|| format!("the program has no map {name}"))
        })
    }

    fn build(mut get: impl FnMut(&str) -> Result<Map>) -> Result<MediaMaps> {
        let pinholes = match get(names::PINHOLES)? {
            Map::Array(data) => Mapped::new(&data)?,
            _ => bail!("map PINHOLES is not an array"),
        };
        Ok(MediaMaps {
            pinholes,
            packets: typed(get(names::PINHOLE_PACKETS)?, names::PINHOLE_PACKETS)?,
            state: typed(get(names::MEDIA_STATE)?, names::MEDIA_STATE)?,
            stats: typed(get(names::MEDIA_STATS)?, names::MEDIA_STATS)?,
            call_ids: typed(get(names::CALL_IDS)?, names::CALL_IDS)?,
            writers: None,
        })
    }

    /// Opens a pinhole: media from `remote` (`None`: anyone) to the local
    /// `port` passes for `idle_ns` after the last packet. An existing
    /// pinhole for the same remote is renewed. Fails when both of the
    /// port's ways hold other live pinholes.
    pub fn open_pinhole(
        &mut self,
        port: u16,
        remote: Option<IpAddr>,
        call_id: Option<&str>,
        idle_ns: u64,
    ) -> Result<()> {
        self.open_pinhole_for(port, remote, call_id, idle_ns, idle_ns)
    }

    /// Like [`MediaMaps::open_pinhole`], but without media the pinhole
    /// stays open for `life_ns` from now rather than `idle_ns`
    /// (`pinhole add --for`). The kernel holds one idle time per
    /// attachment, so the pinhole is written as last seen at `now +
    /// life_ns - idle_ns`: in the future when `life_ns` is longer, which
    /// the programs read as live and do not refresh until it has passed.
    pub fn open_pinhole_for(
        &mut self,
        port: u16,
        remote: Option<IpAddr>,
        call_id: Option<&str>,
        idle_ns: u64,
        life_ns: u64,
    ) -> Result<()> {
        let now = monotonic_ns();
        let last_seen_ns = now.wrapping_add(life_ns).wrapping_sub(idle_ns);
        // From reading the ways to writing one: another writer could pick
        // the same free way in between.
        let _lock = self.lock_writers()?;
        let (kind, words) = match remote {
            Some(addr) => (PINHOLE_ADDR, remote_words(addr)),
            None => (PINHOLE_ANY, [0; 2]),
        };
        let call = match call_id {
            Some(id) => self.call_key(id)?,
            None => 0,
        };
        let ways: Vec<(u32, Pinhole)> = (0..PINHOLE_WAYS)
            .map(|w| {
                let slot = pinhole_slot(port, w);
                (slot, self.pinholes.get(slot))
            })
            .collect();
        let same = ways
            .iter()
            .find(|(_, p)| p.kind == kind && p.remote == words);
        let free = || {
            ways.iter()
                .find(|(_, p)| p.kind == PINHOLE_EMPTY || !live(p, now, idle_ns))
        };
        let Some(&(slot, old)) = same.or_else(free) else {
            bail!(
                "port {port} already has {PINHOLE_WAYS} live pinholes: close one first (sipwall pinhole del)"
            );
        };
        let renewing = old.kind == kind && old.remote == words;
        if !renewing {
            let cpus = aya::util::nr_cpus()
                .map_err(|(_, e)| e)
                .context("counting the possible CPUs")?;
            let zero = aya::maps::PerCpuValues::try_from(vec![0u64; cpus])
                .context("building zero packet counts")?;
            self.packets
                .set(slot, zero, 0)
                .context("zeroing the pinhole's packet count")?;
        }
        self.pinholes.fill(
            slot,
            Pinhole {
                remote: words,
                last_seen_ns,
                opened_ns: if renewing { old.opened_ns } else { now },
                kind,
                call,
            },
        );
        Ok(())
    }

    /// Closes the pinhole of `port` for `remote` (`None`: the one open to
    /// anyone); returns whether there was one.
    pub fn close_pinhole(&mut self, port: u16, remote: Option<IpAddr>) -> bool {
        let (kind, words) = match remote {
            Some(addr) => (PINHOLE_ADDR, remote_words(addr)),
            None => (PINHOLE_ANY, [0; 2]),
        };
        // Without the lock (it cannot fail on an open directory), closing
        // is still right: only a pinhole of this very remote is cleared.
        let _lock = self.lock_writers().ok();
        let mut found = false;
        for w in 0..PINHOLE_WAYS {
            let slot = pinhole_slot(port, w);
            let p = self.pinholes.get(slot);
            if p.kind == kind && p.remote == words {
                self.pinholes.clear(slot);
                found = true;
            }
        }
        found
    }

    /// Every pinhole in use (expired ones too, marked), by port.
    pub fn list(&self, idle_ns: u64) -> Result<Vec<PinholeEntry>> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for slot in 0..PINHOLE_SLOTS {
            let p = self.pinholes.get(slot);
            if p.kind == PINHOLE_EMPTY {
                continue;
            }
            let packets = self
                .packets
                .get(&slot, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0);
            out.push(PinholeEntry {
                port: (slot / PINHOLE_WAYS) as u16,
                remote: (p.kind == PINHOLE_ADDR).then(|| remote_addr(p.remote)),
                call_id: self.call_id(p.call),
                opened_ns: p.opened_ns,
                last_seen_ns: p.last_seen_ns,
                packets,
                live: live(&p, now, idle_ns),
            });
        }
        Ok(out)
    }

    /// How many pinholes the programs pass media through now: [`list`]'s
    /// live ones, without a map lookup per pinhole for its packets (the
    /// metrics read this on every scrape).
    ///
    /// [`list`]: MediaMaps::list
    pub fn live_count(&self, idle_ns: u64) -> usize {
        let now = monotonic_ns();
        (0..PINHOLE_SLOTS)
            .filter(|&slot| live(&self.pinholes.get(slot), now, idle_ns))
            .count()
    }

    /// Frees the slots whose pinholes the kernel no longer honours and the
    /// Call-IDs no pinhole names; returns the Call-IDs of the pinholes
    /// freed.
    pub fn sweep(&mut self, idle_ns: u64) -> Result<Vec<String>> {
        // A slot found expired here may be taken by `pinhole add` before
        // it is cleared: hold the other writers off.
        let _lock = self.lock_writers()?;
        let now = monotonic_ns();
        let mut expired = Vec::new();
        let mut in_use = std::collections::HashSet::new();
        for slot in 0..PINHOLE_SLOTS {
            let p = self.pinholes.get(slot);
            if p.kind == PINHOLE_EMPTY {
                continue;
            }
            if live(&p, now, idle_ns) {
                in_use.insert(p.call);
            } else {
                self.pinholes.clear(slot);
                if let Some(id) = self.call_id(p.call) {
                    expired.push(id);
                }
            }
        }
        let keys: Vec<u32> = self.call_ids.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            if !in_use.contains(&key) {
                let _ = self.call_ids.remove(&key);
            }
        }
        expired.sort();
        expired.dedup();
        Ok(expired)
    }

    /// The key of `call_id` in `CALL_IDS`, entering it if needed.
    fn call_key(&mut self, call_id: &str) -> Result<u32> {
        let bytes = &call_id.as_bytes()[..call_id.len().min(CALL_ID_MAX)];
        let mut key = fnv1a(bytes).max(1);
        for _ in 0..64 {
            match self.call_ids.get(&key, 0) {
                Ok(existing) if &existing.bytes[..existing.len as usize] == bytes => {
                    return Ok(key)
                }
                Ok(_) => key = key.wrapping_add(1).max(1),
                Err(_) => {
                    let mut value = CallId {
                        len: bytes.len() as u32,
                        reserved: 0,
                        bytes: [0; CALL_ID_MAX],
                    };
                    value.bytes[..bytes.len()].copy_from_slice(bytes);
                    self.call_ids
                        .insert(key, value, 0)
                        .context("recording the pinhole's Call-ID (CALL_IDS full?)")?;
                    return Ok(key);
                }
            }
        }
        bail!("no free key for Call-ID {call_id:?} in CALL_IDS")
    }

    fn call_id(&self, key: u32) -> Option<String> {
        if key == 0 {
            return None;
        }
        let v = self.call_ids.get(&key, 0).ok()?;
        let len = (v.len as usize).min(CALL_ID_MAX);
        Some(String::from_utf8_lossy(&v.bytes[..len]).into_owned())
    }

    /// Writes the reader's heartbeat: now, and its pid.
    pub fn heartbeat(&mut self) -> Result<()> {
        let state = MediaState {
            heartbeat_ns: monotonic_ns(),
            reader_pid: std::process::id(),
            reserved: 0,
        };
        self.state
            .set(0, state, 0)
            .context("writing the media reader's heartbeat")
    }

    /// Stops the heartbeat at once (a reader that exits cleanly).
    pub fn clear_heartbeat(&mut self) -> Result<()> {
        self.state
            .set(0, MediaState::default(), 0)
            .context("clearing the media reader's heartbeat")
    }

    /// The reader's last heartbeat.
    pub fn reader(&self) -> Result<MediaState> {
        self.state
            .get(&0, 0)
            .context("reading the media reader's heartbeat")
    }

    /// Copies written and lost, summed over CPUs.
    pub fn stats(&self) -> Result<MediaStats> {
        let per_cpu = self
            .stats
            .get(&0, 0)
            .context("reading the signalling copy counts")?;
        Ok(per_cpu.iter().fold(MediaStats::default(), |mut sum, s| {
            sum.copies += s.copies;
            sum.lost += s.lost;
            sum
        }))
    }
}

/// Whether the programs still pass media through `p` (as `media.rs` in
/// filter-ebpf decides it).
fn live(p: &Pinhole, now: u64, idle_ns: u64) -> bool {
    p.kind != PINHOLE_EMPTY && (now.wrapping_sub(p.last_seen_ns) as i64) < idle_ns as i64
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl CopyRing {
    pub fn open(dir: &Path) -> Result<CopyRing> {
        Ok(CopyRing {
            ring: typed(
                pinned(dir, names::SIGNALLING_COPIES)?,
                names::SIGNALLING_COPIES,
            )?,
        })
    }

    pub fn take(ebpf: &mut aya::Ebpf) -> Result<CopyRing> {
        let map = ebpf
            .take_map(names::SIGNALLING_COPIES)
            .with_context(|| format!("the program has no map {}", names::SIGNALLING_COPIES))?;
        Ok(CopyRing {
            ring: typed(map, names::SIGNALLING_COPIES)?,
        })
    }

    /// The next copy waiting in the ring.
    pub fn next_copy(&mut self) -> Option<Copied> {
        let item = self.ring.next()?;
        if item.len() < COPY_HEADER {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes(item[at..at + 4].try_into().unwrap_or_default());
        let caplen = (word(12) as usize).min(item.len() - COPY_HEADER);
        let flags = word(16);
        Some(Copied {
            ts_ns: u64::from_ne_bytes(item[0..8].try_into().unwrap_or_default()),
            len: word(8),
            outbound: flags & COPY_OUT != 0,
            l3: flags & COPY_L3 != 0,
            data: item[COPY_HEADER..COPY_HEADER + caplen].to_vec(),
        })
    }
}

impl AsRawFd for CopyRing {
    /// The ring's descriptor, readable when copies wait.
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_round_trip() {
        for a in ["192.0.2.7", "2001:db8::1", "::ffff:0:1"] {
            let addr: IpAddr = a.parse().unwrap();
            let back = remote_addr(remote_words(addr));
            let want = match addr {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(back, want);
        }
        // IPv4 as the parser holds a source: zero word, then ::ffff and
        // the address bytes.
        let w = remote_words("192.0.2.7".parse().unwrap());
        assert_eq!(w[0], 0);
        assert_eq!(w[1].to_ne_bytes(), [0, 0, 0xff, 0xff, 192, 0, 2, 7]);
    }
}
