//! Synthetic ports for measurements, as DPDK's net_pcap (`infinite_rx`)
//! and net_null: a source that hands out frames held in memory, once or in
//! a loop, and a sink that frees what it is sent and counts it where
//! another thread can watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use espgate_wire::PacketBuf;

use crate::packet::Packet;
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};

/// A port that receives frames from memory (copied into pool buffers, as
/// a NIC fills mbufs) and sends into nothing, counting live.
pub struct SyntheticQueue {
    info: PortInfo,
    frames: Vec<Vec<u8>>,
    next: usize,
    repeat: bool,
    open: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    stats: QueueStats,
}

impl SyntheticQueue {
    /// A port receiving `frames` (looped when `repeat`).
    pub fn new(info: PortInfo, frames: Vec<Vec<u8>>, repeat: bool) -> Self {
        SyntheticQueue {
            info,
            frames,
            next: 0,
            repeat,
            open: Arc::new(AtomicBool::new(true)),
            sent: Arc::new(AtomicU64::new(0)),
            stats: QueueStats::default(),
        }
    }

    /// Receives only while `open` is set (a measurement starts the flow
    /// once the node is ready).
    pub fn gated(mut self, open: Arc<AtomicBool>) -> Self {
        self.open = open;
        self
    }

    /// Frames sent so far, readable from any thread.
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }
}

impl PortQueue for SyntheticQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = 0;
        if !self.open.load(Ordering::Relaxed) {
            return 0;
        }
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

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize {
        let n = pkts.len();
        for b in pkts.drain(..) {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += b.len() as u64;
            pool.recycle(b);
        }
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Mempool;
    use espgate_wire::ethernet::MacAddr;

    #[test]
    fn loops_its_frames_and_counts_what_it_sinks() {
        let info = PortInfo {
            name: "s".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
        };
        let mut q = SyntheticQueue::new(info, vec![vec![1], vec![2, 2]], true);
        let mut pool = BufPool::new(Mempool::new(64, 16), 8);
        let mut got = Vec::new();
        assert_eq!(q.rx_burst(&mut pool, &mut got, 5), 5);
        let lens: Vec<usize> = got.iter().map(|b| b.len()).collect();
        assert_eq!(lens, vec![1, 2, 1, 2, 1]);
        let counter = q.sent_counter();
        assert_eq!(q.tx_burst(&mut got, &mut pool), 5);
        assert_eq!(counter.load(Ordering::Relaxed), 5);
        let gate = Arc::new(AtomicBool::new(false));
        let mut once =
            SyntheticQueue::new(q.info().clone(), vec![vec![1]], false).gated(gate.clone());
        assert_eq!(once.rx_burst(&mut pool, &mut got, 5), 0, "closed");
        gate.store(true, Ordering::Relaxed);
        assert_eq!(once.rx_burst(&mut pool, &mut got, 5), 1);
        assert_eq!(once.rx_burst(&mut pool, &mut got, 5), 0);
    }
}
