//! The poll-mode port interface every backend implements.

use espgate_wire::PacketBuf;
use espgate_wire::ethernet::MacAddr;

use crate::packet::Packet;
use crate::pool::BufPool;

/// What a port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Name (from the configuration).
    pub name: String,
    /// MAC address frames are sent from.
    pub mac: MacAddr,
    /// Largest IP packet the link carries (Ethernet header excluded).
    pub mtu: usize,
}

/// Counters of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the backend could not take (ring full).
    pub tx_full: u64,
    /// Frames received too long for a buffer, dropped: merged by the
    /// kernel (GRO or LRO here, TSO or GSO on a veth or virtio sender).
    pub rx_too_long: u64,
    /// Frames whose TCP or UDP checksum the kernel left for a device to
    /// fill in, completed by the port.
    pub rx_csum_completed: u64,
}

impl QueueStats {
    /// Copies a received frame into a pool buffer, counts it and appends it
    /// to `out`; `false` (counted in `rx_too_long` alone) if it does not
    /// fit a buffer.
    pub fn receive_copy(&mut self, data: &[u8], pool: &mut BufPool, out: &mut Vec<Packet>) -> bool {
        let mut b = pool.get();
        match b.append(data.len()) {
            Ok(dst) => {
                dst.copy_from_slice(data);
                self.rx_packets += 1;
                self.rx_bytes += data.len() as u64;
                out.push(Packet::Heap(b));
                true
            }
            Err(_) => {
                self.rx_too_long += 1;
                pool.put(b);
                false
            }
        }
    }

    /// After a backend copied the first `sent` frames of `pkts` out: counts
    /// them, returns their buffers to `pool`, and notes a full queue if
    /// frames are left.
    pub fn settle_tx(&mut self, pkts: &mut Vec<Packet>, sent: usize, pool: &mut BufPool) {
        for b in pkts.drain(..sent.min(pkts.len())) {
            self.tx_packets += 1;
            self.tx_bytes += b.len() as u64;
            pool.recycle(b);
        }
        if !pkts.is_empty() {
            self.tx_full += 1;
        }
    }
}

/// One receive/transmit queue pair of a port, owned by one worker.
pub trait PortQueue: Send {
    /// The port this queue belongs to.
    fn info(&self) -> &PortInfo;

    /// Receives up to `max` frames, appended to `out` (in pool buffers, or
    /// in the port's own mbufs); returns how many.
    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize;

    /// Sends frames from the front of `pkts`, removing those it took (their
    /// buffers go back to `pool` or on to the peer); returns how many. What
    /// is left was not taken: the caller retries or drops it.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize;

    /// The queue's counters.
    fn stats(&self) -> QueueStats;

    /// Writes out anything the backend buffers (a pcap file's tail); called
    /// when the node stops.
    fn flush(&mut self) {}
}
