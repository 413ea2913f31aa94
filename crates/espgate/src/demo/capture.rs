//! What the ESP network carried: every frame a, b and r sent, checked for
//! reused (SPI, sequence number) pairs, summarised per SA as runs of
//! sequence numbers by sender, and written as a pcap file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use espgate_io::pcap::PcapWriter;
use espgate_wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;

/// One ESP frame on the wire.
#[derive(Debug, Clone, Copy)]
pub struct EspFrame {
    /// When it was sent, Unix ns.
    pub ns: u64,
    /// Who sent it.
    pub sender: MacAddr,
    /// SPI.
    pub spi: u32,
    /// Sequence number (the low 32 bits on the wire).
    pub seq: u32,
}

/// A stretch of one SA's numbers sent by one node.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// The sender.
    pub sender: MacAddr,
    /// First and last sequence number.
    pub first: u32,
    /// Last.
    pub last: u32,
    /// Frames.
    pub frames: usize,
}

/// The ESP frames of a capture, in order.
pub fn esp_frames(frames: &[(u64, Vec<u8>)]) -> Vec<EspFrame> {
    frames
        .iter()
        .filter_map(|(ns, f)| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            if eth.ethertype() != EtherType::IPV4 {
                return None;
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.protocol() != protocol::ESP {
                return None;
            }
            let l4 = eth.payload().get(ip.header_len()..ip.header_len() + 8)?;
            Some(EspFrame {
                ns: *ns,
                sender: eth.src(),
                spi: u32::from_be_bytes(l4[..4].try_into().ok()?),
                seq: u32::from_be_bytes(l4[4..8].try_into().ok()?),
            })
        })
        .collect()
}

/// (SPI, sequence number) pairs sent more than once, with their counts.
pub fn reused(esp: &[EspFrame]) -> Vec<((u32, u32), usize)> {
    let mut seen: HashMap<(u32, u32), usize> = HashMap::new();
    for e in esp {
        *seen.entry((e.spi, e.seq)).or_default() += 1;
    }
    let mut twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort_unstable();
    twice
}

/// The runs of SA `spi`: consecutive frames by the same sender.
pub fn runs(esp: &[EspFrame], spi: u32) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for e in esp.iter().filter(|e| e.spi == spi) {
        match out.last_mut() {
            Some(r) if r.sender == e.sender => {
                r.last = e.seq;
                r.frames += 1;
            }
            _ => out.push(Run {
                sender: e.sender,
                first: e.seq,
                last: e.seq,
                frames: 1,
            }),
        }
    }
    out
}

/// Writes the capture as a pcap file.
pub fn write_pcap(frames: &[(u64, Vec<u8>)], path: &Path) -> anyhow::Result<()> {
    let mut w = PcapWriter::new(File::create(path)?)?;
    for (ns, f) in frames {
        w.write(*ns, f)?;
    }
    w.flush()?;
    Ok(())
}
