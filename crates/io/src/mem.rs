//! In-memory links: two ports wired back to back through lock-free rings,
//! one ring per receiving queue. A frame is steered to a queue of the far
//! port by [`rss::flow_hash`](crate::rss::flow_hash), as a NIC's RSS would.
//! The buffer itself crosses the link (no copy), and the receiving worker
//! returns it to the node's shared pool.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use espgate_wire::PacketBuf;

use crate::packet::Packet;
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};
use crate::rss::flow_hash;

type Ring = Arc<ArrayQueue<Packet>>;

/// A copy of every frame a queue sends, for tests and the demo (the frames
/// themselves go on unchanged).
pub type Tap = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// One queue of an in-memory port.
pub struct MemQueue {
    info: PortInfo,
    rx: Ring,
    peer_rx: Arc<[Ring]>,
    rest: Vec<Packet>,
    stats: QueueStats,
    tap: Option<Tap>,
}

impl MemQueue {
    /// Copies every frame this queue sends into `tap`.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }
}

/// Makes a link between port `a` (with `a_queues` queues) and port `b`
/// (with `b_queues`); every ring holds `depth` frames.
pub fn link(
    a: PortInfo,
    a_queues: usize,
    b: PortInfo,
    b_queues: usize,
    depth: usize,
) -> (Vec<MemQueue>, Vec<MemQueue>) {
    let rings = |n: usize| -> Arc<[Ring]> {
        (0..n.max(1))
            .map(|_| Arc::new(ArrayQueue::new(depth.max(1))))
            .collect()
    };
    let a_rx = rings(a_queues);
    let b_rx = rings(b_queues);
    let side = |info: &PortInfo, own: &Arc<[Ring]>, peer: &Arc<[Ring]>| -> Vec<MemQueue> {
        own.iter()
            .map(|rx| MemQueue {
                info: info.clone(),
                rx: rx.clone(),
                peer_rx: peer.clone(),
                rest: Vec::new(),
                stats: QueueStats::default(),
                tap: None,
            })
            .collect()
    };
    (side(&a, &a_rx, &b_rx), side(&b, &b_rx, &a_rx))
}

impl PortQueue for MemQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, _pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(b) = self.rx.pop() else { break };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += b.len() as u64;
            out.push(b);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, _pool: &mut BufPool) -> usize {
        let mut taken = 0;
        let mut blocked = false;
        let n = self.peer_rx.len();
        for pkt in pkts.drain(..) {
            if blocked {
                self.rest.push(pkt);
                continue;
            }
            let ring = &self.peer_rx[flow_hash(pkt.data()) as usize % n];
            let len = pkt.len() as u64;
            let copy = self.tap.as_ref().map(|_| pkt.data().to_vec());
            match ring.push(pkt) {
                Ok(()) => {
                    if let (Some(tap), Some(copy)) = (&self.tap, copy)
                        && let Ok(mut t) = tap.lock()
                    {
                        t.push(copy);
                    }
                    taken += 1;
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len;
                }
                Err(pkt) => {
                    blocked = true;
                    self.stats.tx_full += 1;
                    self.rest.push(pkt);
                }
            }
        }
        pkts.append(&mut self.rest);
        taken
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

    fn info(name: &str) -> PortInfo {
        PortInfo {
            name: name.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
        }
    }

    #[test]
    fn frames_cross_and_full_rings_push_back() {
        let (mut a, mut b) = link(info("a"), 1, info("b"), 1, 4);
        let mut pool = BufPool::new(Mempool::new(64, 16), 8);
        let mut pkts: Vec<Packet> = (0..6u8)
            .map(|k| {
                let mut x = pool.get();
                x.append(1).unwrap()[0] = k;
                Packet::Heap(x)
            })
            .collect();
        assert_eq!(a[0].tx_burst(&mut pkts, &mut pool), 4);
        assert_eq!(
            pkts.len(),
            2,
            "what the ring could not take stays with the caller"
        );
        assert_eq!(pkts[0].data(), &[4]);
        let mut got = Vec::new();
        assert_eq!(b[0].rx_burst(&mut pool, &mut got, 32), 4);
        assert_eq!(
            got.iter().map(|x| x.data()[0]).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(a[0].stats().tx_full, 1);
    }
}
