//! Packet buffers: a [`Mempool`] shared by the workers of a node (a
//! lock-free free list) and a [`BufPool`] per worker that caches buffers
//! locally, as DPDK's mempool and its per-lcore cache do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use espgate_wire::HeapBuf;

use crate::packet::Packet;

/// Room in front of a received frame: Ethernet (with tag), IPv6, UDP, ESP
/// header and IV fit with space to spare.
pub const HEADROOM: usize = 128;
/// The largest frame (Ethernet header included) a buffer is made for, and
/// what a DPDK mbuf holds in one segment: a longer frame is dropped.
pub const MAX_FRAME: usize = 2048;
/// Bytes per buffer: headroom, a [`MAX_FRAME`]-byte frame, and tailroom for
/// padding, trailer and ICV.
pub const BUF_SIZE: usize = HEADROOM + MAX_FRAME + 64;

/// The shared part of a pool: free buffers any worker may take.
#[derive(Debug)]
pub struct Mempool {
    free: ArrayQueue<HeapBuf>,
    allocated: AtomicU64,
}

impl Mempool {
    /// A pool that keeps up to `capacity` free buffers, `prealloc` of them
    /// made now.
    pub fn new(capacity: usize, prealloc: usize) -> Arc<Self> {
        let pool = Mempool {
            free: ArrayQueue::new(capacity.max(1)),
            allocated: AtomicU64::new(0),
        };
        for _ in 0..prealloc.min(capacity) {
            let _ = pool.free.push(pool.alloc());
        }
        Arc::new(pool)
    }

    fn alloc(&self) -> HeapBuf {
        self.allocated.fetch_add(1, Ordering::Relaxed);
        HeapBuf::with_capacity(BUF_SIZE, HEADROOM)
    }

    /// Buffers allocated since the pool was made (a steady state allocates
    /// none).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Free buffers in the shared list.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

/// One worker's handle on a [`Mempool`], with a local cache.
#[derive(Debug)]
pub struct BufPool {
    shared: Arc<Mempool>,
    cache: Vec<HeapBuf>,
    cache_size: usize,
}

impl BufPool {
    /// A handle with a local cache of up to `cache_size` buffers.
    pub fn new(shared: Arc<Mempool>, cache_size: usize) -> Self {
        BufPool {
            shared,
            cache: Vec::with_capacity(cache_size * 2),
            cache_size: cache_size.max(1),
        }
    }

    /// An empty buffer with [`HEADROOM`] in front.
    #[inline]
    pub fn get(&mut self) -> HeapBuf {
        if self.cache.is_empty() {
            for _ in 0..self.cache_size {
                match self.shared.free.pop() {
                    Some(b) => self.cache.push(b),
                    None => break,
                }
            }
        }
        let mut b = self.cache.pop().unwrap_or_else(|| self.shared.alloc());
        b.clear(HEADROOM);
        b
    }

    /// Returns a buffer for reuse.
    #[inline]
    pub fn put(&mut self, b: HeapBuf) {
        if b.capacity() != BUF_SIZE {
            return;
        }
        self.cache.push(b);
        if self.cache.len() >= self.cache_size * 2 {
            for b in self.cache.drain(self.cache_size..) {
                // A full shared list drops the buffer: memory stays bounded.
                let _ = self.shared.free.push(b);
            }
        }
    }

    /// Takes back a frame that goes no further: a pool buffer for reuse;
    /// a DPDK mbuf goes back to DPDK's pool.
    #[inline]
    pub fn recycle(&mut self, p: Packet) {
        match p {
            Packet::Heap(b) => self.put(b),
            #[cfg(feature = "dpdk")]
            Packet::Mbuf(m) => drop(m),
        }
    }

    /// Takes back every frame of `pkts`.
    pub fn recycle_all(&mut self, pkts: &mut Vec<Packet>) {
        for p in pkts.drain(..) {
            self.recycle(p);
        }
    }

    /// The shared pool.
    pub fn shared(&self) -> &Arc<Mempool> {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espgate_wire::PacketBuf;

    #[test]
    fn steady_state_allocates_nothing() {
        let shared = Mempool::new(256, 64);
        let mut a = BufPool::new(shared.clone(), 16);
        let mut b = BufPool::new(shared.clone(), 16);
        let start = shared.allocated();
        for _ in 0..10_000 {
            let mut buf = a.get();
            assert_eq!(buf.headroom(), HEADROOM);
            buf.append(60).unwrap();
            // Buffers migrate from one worker to the other, as frames do.
            b.put(buf);
            let x = b.get();
            a.put(x);
        }
        assert_eq!(shared.allocated(), start);
    }

    #[test]
    fn empty_pool_allocates_and_full_pool_drops() {
        let shared = Mempool::new(4, 0);
        let mut p = BufPool::new(shared.clone(), 2);
        let bufs: Vec<_> = (0..10).map(|_| p.get()).collect();
        assert_eq!(shared.allocated(), 10);
        for b in bufs {
            p.put(b);
        }
        assert!(shared.free() <= 4);
    }
}
