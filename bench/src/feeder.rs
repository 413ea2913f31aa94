//! A decrypt-path source that never runs dry: a thread on the other core
//! seals fresh ESP (each sequence number once, so nothing is refused as a
//! replay) into buffers of the node's pool and hands them to the worker's
//! receive queue through a lock-free ring, as a NIC writes frames into
//! memory another core then reads. The worker recycles the buffers into
//! the same pool, where the feeder takes them again, so the frames stay in
//! cache as a NIC's do (a source preloaded with every frame of a run reads
//! hundreds of megabytes cold and measures the memory instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use espgate_esp::OutboundSa;
use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue, QueueStats};
use espgate_wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use espgate_wire::{HeapBuf, PacketBuf};

/// Frames in flight between the feeder and the worker.
const RING: usize = 1024;

/// The worker's end: a receive queue fed by the feeder thread.
pub struct FedQueue {
    info: PortInfo,
    ring: Arc<ArrayQueue<HeapBuf>>,
    stats: QueueStats,
}

/// The feeder thread, until stopped.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Feeder {
    /// Starts sealing `inners` in turn with `sa`, framed from `src` to `dst`
    /// as Ethernet, once `open` is set; returns the feeder and the queue
    /// the worker receives on.
    pub fn start(
        mut sa: OutboundSa,
        inners: Vec<Vec<u8>>,
        (src, dst): (MacAddr, MacAddr),
        info: PortInfo,
        pool: Arc<Mempool>,
        open: Arc<AtomicBool>,
    ) -> (Feeder, FedQueue) {
        let ring = Arc::new(ArrayQueue::new(RING));
        let stop = Arc::new(AtomicBool::new(false));
        let eth = EthernetRepr {
            dst,
            src,
            vlan: None,
            ethertype: EtherType::IPV4,
        };
        let thread = {
            let (ring, stop) = (ring.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-feeder".into())
                .spawn(move || {
                    // Core 0; the worker is pinned to core 1.
                    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
                    let mut pool = BufPool::new(pool, 64);
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if !open.load(Ordering::Relaxed) || ring.is_full() {
                            std::hint::spin_loop();
                            continue;
                        }
                        let mut b = pool.get();
                        let inner = &inners[k % inners.len()];
                        k += 1;
                        b.append(inner.len()).expect("room").copy_from_slice(inner);
                        if sa.encapsulate(&mut b).is_err() {
                            break;
                        }
                        eth.emit(b.prepend(eth.header_len()).expect("headroom"))
                            .expect("room");
                        let _ = ring.push(b);
                    }
                })
                .expect("feeder thread")
        };
        (
            Feeder { stop, thread },
            FedQueue {
                info,
                ring,
                stats: QueueStats::default(),
            },
        )
    }

    /// Stops the feeder.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

impl PortQueue for FedQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, _pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(b) = self.ring.pop() else { break };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += b.len() as u64;
            out.push(Packet::Heap(b));
            n += 1;
        }
        n
    }

    /// Frames sent back this way (none in a decrypt run) are dropped.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize {
        let n = pkts.len();
        self.stats.settle_tx(pkts, n, pool);
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}
