//! `sipwall check --pcap`: every frame of a capture through the real program
//! (BPF_PROG_TEST_RUN, nothing attached), with the verdict it returned and
//! the reason read from the counter it moved.
use std::{fs::File, io::BufReader, path::Path};

use anyhow::{Context as _, Result};
use filter_common::Reason;
use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};
use serde_json::json;

use crate::{
    error::UsageError,
    kernel::runner::{Runner, Verdict, MAX_FRAME, MIN_FRAME},
    policy::ruleset::Ruleset,
};

/// What happened to one frame of the capture.
#[derive(Debug)]
pub struct Checked {
    pub index: usize,
    pub len: usize,
    pub result: Result<(Verdict, Reason), String>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads every frame of a pcap or pcapng file with an Ethernet link type.
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>> {
    let name = path.display();
    let bad = |what: String| UsageError(format!("{name}: {what}"));
    let mut magic = [0u8; 4];
    {
        use std::io::Read as _;
        let mut f = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        f.read_exact(&mut magic)
            .map_err(|_| bad("too short to be a capture file".into()))?;
    }
    let file = BufReader::new(File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?);
    let mut frames = Vec::new();
    if PCAP_MAGICS.contains(&magic) {
        let mut reader =
            PcapReader::new(file).map_err(|e| bad(format!("not a valid pcap file: {e}")))?;
        let link = reader.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(bad(format!(
                "link type {link:?} is not supported: only Ethernet captures can be replayed"
            ))
            .into());
        }
        while let Some(packet) = reader.next_packet() {
            let packet = packet.map_err(|e| {
                bad(format!(
                    "packet {} is cut short or corrupt: {e}",
                    frames.len()
                ))
            })?;
            frames.push(packet.data.into_owned());
        }
    } else if magic == PCAPNG_MAGIC {
        let mut reader =
            PcapNgReader::new(file).map_err(|e| bad(format!("not a valid pcapng file: {e}")))?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block.map_err(|e| {
                bad(format!(
                    "block after packet {} is cut short or corrupt: {e}",
                    frames.len()
                ))
            })?;
            match block {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = links.get(epb.interface_id as usize).copied();
                    ensure_ethernet(link, frames.len()).map_err(bad)?;
                    frames.push(epb.data.into_owned());
                }
                Block::SimplePacket(spb) => {
                    ensure_ethernet(links.first().copied(), frames.len()).map_err(bad)?;
                    frames.push(spb.data.into_owned());
                }
                _ => {}
            }
        }
    } else {
        return Err(bad("not a pcap or pcapng file (unknown magic number)".into()).into());
    }
    Ok(frames)
}

fn ensure_ethernet(link: Option<DataLink>, index: usize) -> Result<(), String> {
    match link {
        Some(DataLink::ETHERNET) => Ok(()),
        Some(other) => Err(format!(
            "packet {index}: link type {other:?} is not supported: only Ethernet captures can be replayed"
        )),
        None => Err(format!("packet {index} names an interface the file does not describe")),
    }
}

/// Runs every frame through the program loaded with `ruleset`.
pub fn check(frames: &[Vec<u8>], ruleset: &Ruleset) -> Result<Vec<Checked>> {
    let runner = Runner::new(ruleset)?;
    frames
        .iter()
        .enumerate()
        .map(|(index, frame)| {
            let result = if frame.len() < MIN_FRAME {
                Err(format!(
                    "{} bytes: shorter than an Ethernet header, not run",
                    frame.len()
                ))
            } else if frame.len() > MAX_FRAME {
                Err(format!(
                    "{} bytes: larger than one page, not run",
                    frame.len()
                ))
            } else {
                let outcome = runner
                    .run(frame)
                    .with_context(|| format!("running packet {index} through the program"))?;
                match outcome.reason() {
                    Some(reason) => Ok((outcome.verdict, reason)),
                    None => Err(format!("counters moved unexpectedly: {:?}", outcome.moved)),
                }
            };
            Ok(Checked {
                index,
                len: frame.len(),
                result,
            })
        })
        .collect()
}

pub fn to_json(results: &[Checked]) -> serde_json::Value {
    let packets: Vec<_> = results
        .iter()
        .map(|c| match &c.result {
            Ok((verdict, reason)) => json!({
                "index": c.index, "verdict": verdict.name(), "reason": reason.name(), "len": c.len,
            }),
            Err(e) => json!({"index": c.index, "verdict": "error", "reason": null, "len": c.len, "error": e}),
        })
        .collect();
    json!({ "packets": packets, "summary": summary_counts(results) })
}

/// Packets per reason (and errors), for the closing summary.
fn summary_counts(results: &[Checked]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("total".into(), results.len().into());
    for verdict in ["pass", "drop"] {
        let n = results
            .iter()
            .filter(|c| matches!(&c.result, Ok((v, _)) if v.name() == verdict))
            .count();
        m.insert(verdict.into(), n.into());
    }
    m.insert(
        "error".into(),
        results.iter().filter(|c| c.result.is_err()).count().into(),
    );
    for reason in Reason::ALL {
        let n = results
            .iter()
            .filter(|c| matches!(&c.result, Ok((_, r)) if *r == reason))
            .count();
        m.insert(reason.name().into(), n.into());
    }
    m
}

pub fn to_text(results: &[Checked]) -> String {
    let mut out = String::from("  #  verdict  reason        bytes\n");
    for c in results {
        match &c.result {
            Ok((v, r)) => {
                out += &format!(
                    "{:>3}  {:<7}  {:<12} {:>6}\n",
                    c.index,
                    v.name(),
                    r.name(),
                    c.len
                )
            }
            Err(e) => out += &format!("{:>3}  error    {e}\n", c.index),
        }
    }
    let s = summary_counts(results);
    out += &format!(
        "\n{} packets: {} pass, {} drop, {} not run",
        s["total"], s["pass"], s["drop"], s["error"]
    );
    let by_reason: Vec<String> = Reason::ALL
        .iter()
        .filter(|r| s[r.name()].as_u64() != Some(0))
        .map(|r| format!("{} {}", r.name(), s[r.name()]))
        .collect();
    if !by_reason.is_empty() {
        out += &format!(" ({})", by_reason.join(", "));
    }
    out.push('\n');
    out
}
