//! `espgate esp encrypt|decrypt`: one SA over the frames of a pcap file.
//!
//! Encrypt takes each Ethernet frame carrying IPv4 or IPv6, encapsulates
//! the IP packet and writes it back with the same MAC addresses (and VLAN
//! tag) and the outer packet's EtherType. Decrypt does the reverse for ESP
//! and ESP-in-UDP frames. Frames that are not for the SA are counted and
//! left out of the output; a summary goes to standard output.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::Context;
use espgate_control::load_sa_file;
use espgate_esp::{Backend, Direction, Inbound, OutboundSa, Sad};
use espgate_io::pcap::{PcapReader, PcapWriter};
use espgate_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use espgate_wire::ip;
use espgate_wire::{HeapBuf, PacketBuf};

/// What happened to the frames of one run.
#[derive(Default)]
struct Tally {
    read: u64,
    written: u64,
    skipped: BTreeMap<String, u64>,
}

impl Tally {
    fn skip(&mut self, why: impl Into<String>) {
        *self.skipped.entry(why.into()).or_default() += 1;
    }
}

/// Runs the SA in `sa_path` over `input` into `output`.
pub fn run(
    sa_path: &Path,
    backend: Backend,
    input: &Path,
    output: &Path,
    encrypt: bool,
) -> anyhow::Result<()> {
    let sa_file = load_sa_file(sa_path)?;
    let direction = if encrypt {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let cfg = sa_file.for_direction(direction)?;
    let reader =
        PcapReader::new(File::open(input).with_context(|| format!("{}", input.display()))?)
            .with_context(|| format!("{}", input.display()))?;
    let mut writer =
        PcapWriter::new(File::create(output).with_context(|| format!("{}", output.display()))?)?;
    let mut tally = Tally::default();
    let mut out_sa = None;
    let mut sad = Sad::new();
    if encrypt {
        out_sa = Some(OutboundSa::new(&cfg, backend)?);
    } else {
        sad.insert(&cfg, backend)?;
    }
    let mut buf = HeapBuf::with_capacity(
        HeapBuf::DEFAULT_HEADROOM + 65_536 + HeapBuf::DEFAULT_TAILROOM,
        0,
    );
    for rec in reader {
        let rec = rec.with_context(|| format!("{}", input.display()))?;
        tally.read += 1;
        let Ok(frame) = EthernetFrame::new_checked(&rec.data[..]) else {
            tally.skip("not an Ethernet frame");
            continue;
        };
        let Ok(eth) = EthernetRepr::parse(&frame) else {
            tally.skip("unsupported Ethernet header");
            continue;
        };
        if eth.ethertype != EtherType::IPV4 && eth.ethertype != EtherType::IPV6 {
            tally.skip(format!("ethertype {:#06x}", eth.ethertype.0));
            continue;
        }
        buf.reset(HeapBuf::DEFAULT_HEADROOM, frame.payload())?;
        let result = match &mut out_sa {
            Some(sa) => sa.encapsulate(&mut buf).map(|_| ()),
            None => match sad.decapsulate(&mut buf) {
                Ok(Inbound::Decapsulated { .. }) => Ok(()),
                Ok(Inbound::Ike) => {
                    tally.skip("IKE (non-ESP marker)");
                    continue;
                }
                Ok(Inbound::NatKeepalive) => {
                    tally.skip("NAT keepalive");
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tally.skip(format!("dropped: {e}"));
            continue;
        }
        let ethertype = match ip::version_of(buf.data()) {
            Some(6) => EtherType::IPV6,
            _ => EtherType::IPV4,
        };
        let hdr = EthernetRepr { ethertype, ..eth };
        let h = buf.prepend(hdr.header_len())?;
        hdr.emit(h)?;
        writer.write(rec.ts_nanos, buf.data())?;
        tally.written += 1;
    }
    writer.flush()?;
    let verb = if encrypt { "encrypted" } else { "decrypted" };
    outln!(
        "{verb} {} of {} frames with spi {:#x} ({}, {}{}) using {backend}",
        tally.written,
        tally.read,
        cfg.spi,
        cfg.algorithm,
        if cfg.esn { "ESN" } else { "32-bit seq" },
        if cfg.udp_encap.is_some() {
            ", ESP in UDP"
        } else {
            ""
        },
    )?;
    for (why, n) in &tally.skipped {
        outln!("  skipped {n}: {why}")?;
    }
    Ok(())
}
