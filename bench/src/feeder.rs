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

use espgate_esp::OutboundSa;
use espgate_io::mem::{self, MemQueue};
use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue};
use espgate_wire::PacketBuf;
use espgate_wire::ethernet::{EtherType, EthernetRepr, MacAddr};

/// Frames in flight between the feeder and the worker.
const RING: usize = 1024;
/// Frames the feeder seals before it hands them over.
const BURST: usize = 32;

/// The feeder thread, until stopped.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Feeder {
    /// Starts sealing `inners` in turn with `sa`, framed from `src` to `dst`
    /// as Ethernet, once `open` is set; returns the feeder and the
    /// in-memory queue (port `info`) the worker receives on.
    pub fn start(
        mut sa: OutboundSa,
        inners: Vec<Vec<u8>>,
        (src, dst): (MacAddr, MacAddr),
        info: PortInfo,
        pool: Arc<Mempool>,
        open: Arc<AtomicBool>,
    ) -> (Feeder, MemQueue) {
        let (mut ours, theirs) = mem::link(info.clone(), 1, info, 1, RING);
        let mut ours = ours.pop().expect("one queue");
        let stop = Arc::new(AtomicBool::new(false));
        let eth = EthernetRepr {
            dst,
            src,
            vlan: None,
            ethertype: EtherType::IPV4,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bench-feeder".into())
                .spawn(move || {
                    // Core 0; the worker is pinned to core 1.
                    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
                    let mut pool = BufPool::new(pool, 64);
                    let mut burst: Vec<Packet> = Vec::with_capacity(BURST);
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if !open.load(Ordering::Relaxed) {
                            std::hint::spin_loop();
                            continue;
                        }
                        while burst.len() < BURST {
                            let mut b = pool.get();
                            let inner = &inners[k % inners.len()];
                            k += 1;
                            b.append(inner.len()).expect("room").copy_from_slice(inner);
                            if sa.encapsulate(&mut b).is_err() {
                                return;
                            }
                            eth.emit(b.prepend(eth.header_len()).expect("headroom"))
                                .expect("room");
                            burst.push(Packet::Heap(b));
                        }
                        // What the full ring leaves goes with the next try.
                        ours.tx_burst(&mut burst, &mut pool);
                    }
                })
                .expect("feeder thread")
        };
        (
            Feeder { stop, thread },
            theirs.into_iter().next().expect("one queue"),
        )
    }

    /// Stops the feeder.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
