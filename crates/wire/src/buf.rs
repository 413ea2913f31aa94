//! Packet buffers with headroom and tailroom, so headers can be pushed in
//! front and trailers behind without copying the packet (the mbuf model).

use crate::{Layer, Result, WireError};

/// A packet in a larger buffer: `data()` is the packet, with free room on
/// both sides. The I/O layer implements this for its buffers (pool buffers,
/// DPDK mbufs); [`HeapBuf`] is a plain owned one.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes before the packet.
    fn headroom(&self) -> usize;
    /// Free bytes after the packet.
    fn tailroom(&self) -> usize;
    /// Grows the packet at the front by `n` bytes and returns the new start
    /// of the packet (the `n` new bytes first).
    fn prepend(&mut self, n: usize) -> Result<&mut [u8]>;
    /// Grows the packet at the back by `n` bytes and returns the new bytes.
    fn append(&mut self, n: usize) -> Result<&mut [u8]>;
    /// Removes `n` bytes from the front.
    fn adj(&mut self, n: usize) -> Result<()>;
    /// Removes `n` bytes from the back.
    fn trim(&mut self, n: usize) -> Result<()>;

    /// Length of the packet.
    fn len(&self) -> usize {
        self.data().len()
    }

    /// Whether the packet is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An owned buffer with room on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapBuf {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl HeapBuf {
    /// Room left before the packet by [`HeapBuf::from_packet`]: Ethernet with
    /// a tag, an IPv6 outer header, UDP, the ESP header and IV.
    pub const DEFAULT_HEADROOM: usize = 128;
    /// Room left after the packet by [`HeapBuf::from_packet`]: padding,
    /// trailer and ICV.
    pub const DEFAULT_TAILROOM: usize = 64;

    /// An empty packet with `headroom` bytes before it and `capacity -
    /// headroom` after it.
    pub fn with_capacity(capacity: usize, headroom: usize) -> Self {
        let start = headroom.min(capacity);
        HeapBuf {
            bytes: vec![0; capacity].into_boxed_slice(),
            start,
            end: start,
        }
    }

    /// A copy of `packet` with the default headroom and tailroom.
    pub fn from_packet(packet: &[u8]) -> Self {
        let mut b = HeapBuf::with_capacity(
            Self::DEFAULT_HEADROOM + packet.len() + Self::DEFAULT_TAILROOM,
            Self::DEFAULT_HEADROOM,
        );
        b.end = b.start + packet.len();
        b.bytes[b.start..b.end].copy_from_slice(packet);
        b
    }

    /// Total bytes of the buffer (headroom, packet and tailroom).
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the packet and places its start after `headroom` bytes.
    pub fn clear(&mut self, headroom: usize) {
        self.start = headroom.min(self.bytes.len());
        self.end = self.start;
    }

    /// Replaces the packet with `packet`, placed after `headroom` bytes.
    pub fn reset(&mut self, headroom: usize, packet: &[u8]) -> Result<()> {
        if headroom + packet.len() > self.bytes.len() {
            return Err(no_room(headroom + packet.len(), self.bytes.len()));
        }
        self.start = headroom;
        self.end = headroom + packet.len();
        self.bytes[self.start..self.end].copy_from_slice(packet);
        Ok(())
    }
}

fn no_room(need: usize, have: usize) -> WireError {
    WireError::Truncated {
        layer: Layer::Buffer,
        need,
        have,
    }
}

impl PacketBuf for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.end]
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }

    #[inline]
    fn tailroom(&self) -> usize {
        self.bytes.len() - self.end
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8]> {
        if n > self.start {
            return Err(no_room(n, self.start));
        }
        self.start -= n;
        Ok(&mut self.bytes[self.start..self.end])
    }

    #[inline]
    fn append(&mut self, n: usize) -> Result<&mut [u8]> {
        if n > self.tailroom() {
            return Err(no_room(n, self.tailroom()));
        }
        let old = self.end;
        self.end += n;
        Ok(&mut self.bytes[old..self.end])
    }

    #[inline]
    fn adj(&mut self, n: usize) -> Result<()> {
        if n > self.len() {
            return Err(no_room(n, self.len()));
        }
        self.start += n;
        Ok(())
    }

    #[inline]
    fn trim(&mut self, n: usize) -> Result<()> {
        if n > self.len() {
            return Err(no_room(n, self.len()));
        }
        self.end -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_append_adj_trim() {
        let mut b = HeapBuf::with_capacity(16, 4);
        b.append(4).unwrap().copy_from_slice(b"abcd");
        b.prepend(2).unwrap()[..2].copy_from_slice(b"xy");
        assert_eq!(b.data(), b"xyabcd");
        assert_eq!((b.headroom(), b.tailroom()), (2, 8));
        assert!(b.prepend(3).is_err());
        assert!(b.append(9).is_err());
        b.adj(2).unwrap();
        b.trim(1).unwrap();
        assert_eq!(b.data(), b"abc");
        assert!(b.adj(4).is_err());
        assert!(b.trim(4).is_err());
        assert_eq!(b.data(), b"abc");
    }
}
