//! An in-memory punt device: what the node punts waits for the test to
//! take it, and what the test gives the node is what the kernel would have
//! sent through a TUN device.

use std::io;

use crossbeam_queue::ArrayQueue;

use crate::punt::PuntDevice;

/// A punt device in memory, each way a ring of `depth` packets.
pub struct MemPunt {
    to_kernel: ArrayQueue<Vec<u8>>,
    from_kernel: ArrayQueue<Vec<u8>>,
}

impl MemPunt {
    /// A device whose rings hold `depth` packets each: a packet punted
    /// while `depth` wait is refused as a full TUN queue would refuse it.
    pub fn new(depth: usize) -> Self {
        MemPunt {
            to_kernel: ArrayQueue::new(depth.max(1)),
            from_kernel: ArrayQueue::new(depth.max(1)),
        }
    }

    /// Takes the packets the node punted so far, in order.
    pub fn punted(&self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.to_kernel.pop()).collect()
    }

    /// Gives the node a packet as the kernel would send it; `false` if the
    /// ring is full.
    pub fn send_as_kernel(&self, packet: &[u8]) -> bool {
        self.from_kernel.push(packet.to_vec()).is_ok()
    }
}

impl PuntDevice for MemPunt {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.to_kernel
            .push(packet.to_vec())
            .map_err(|_| io::ErrorKind::WouldBlock.into())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.from_kernel.pop().map(|p| {
            // Cut short, as a TUN device cuts a packet longer than the read.
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            n
        }))
    }
}
