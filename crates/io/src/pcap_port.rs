//! A port made of pcap files, as DPDK's net_pcap: frames are received from
//! a capture (replayed once, or looped) and sent into another.

use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use espgate_wire::{HeapBuf, PacketBuf};

use crate::pcap::{PcapError, PcapReader, PcapWriter};
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};

/// The single queue of a pcap port.
pub struct PcapQueue {
    info: PortInfo,
    frames: Vec<Vec<u8>>,
    next: usize,
    repeat: bool,
    writer: Option<PcapWriter<File>>,
    stats: QueueStats,
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
            info,
            frames,
            next: 0,
            repeat,
            writer,
            stats: QueueStats::default(),
        })
    }

    /// Whether every input frame has been received (never, when looping).
    pub fn rx_done(&self) -> bool {
        !self.repeat && self.next >= self.frames.len()
    }
}

impl PortQueue for PcapQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<HeapBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max && !self.frames.is_empty() {
            if self.next >= self.frames.len() {
                if !self.repeat {
                    break;
                }
                self.next = 0;
            }
            let frame = &self.frames[self.next];
            self.next += 1;
            if self.stats.receive_copy(frame, pool, out) {
                n += 1;
            }
        }
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<HeapBuf>, pool: &mut BufPool) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = pkts.len();
        for b in pkts.drain(..) {
            if let Some(w) = &mut self.writer
                && w.write(now, b.data()).is_ok()
            {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += b.len() as u64;
            }
            pool.put(b);
        }
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            eprintln!("{}: pcap output: {e}", self.info.name);
        }
    }
}
