//! A port made of pcap files, as DPDK's net_pcap: frames are received from
//! a capture (replayed once, or looped) and sent into another.

use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use espgate_wire::PacketBuf;

use crate::packet::Packet;
use crate::pcap::{PcapError, PcapReader, PcapWriter};
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};
use crate::synthetic::SyntheticQueue;

/// The single queue of a pcap port.
pub struct PcapQueue {
    source: SyntheticQueue,
    writer: Option<PcapWriter<File>>,
    sent: QueueStats,
}

impl PcapQueue {
    /// Opens the port: frames to receive come from `rx` (all read now),
    /// frames sent go to `tx`; `repeat` loops the input forever.
    pub fn open(
        info: PortInfo,
        rx: Option<&Path>,
        tx: Option<&Path>,
        repeat: bool,
    ) -> Result<Self, PcapError> {
        let frames = match rx {
            Some(p) => PcapReader::new(File::open(p)?)?
                .map(|r| r.map(|rec| rec.data))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let writer = match tx {
            Some(p) => Some(PcapWriter::new(File::create(p)?)?),
            None => None,
        };
        Ok(PcapQueue {
            source: SyntheticQueue::new(info, frames, repeat),
            writer,
            sent: QueueStats::default(),
        })
    }
}

impl PortQueue for PcapQueue {
    fn info(&self) -> &PortInfo {
        self.source.info()
    }

    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        self.source.rx_burst(pool, out, max)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = pkts.len();
        for b in pkts.drain(..) {
            if let Some(w) = &mut self.writer
                && w.write(now, b.data()).is_ok()
            {
                self.sent.tx_packets += 1;
                self.sent.tx_bytes += b.len() as u64;
            }
            pool.recycle(b);
        }
        n
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            tx_packets: self.sent.tx_packets,
            tx_bytes: self.sent.tx_bytes,
            ..self.source.stats()
        }
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            eprintln!("{}: pcap output: {e}", self.source.info().name);
        }
    }
}
