//! The frame a worker holds: a pool buffer, or (with the `dpdk` feature)
//! the mbuf a DPDK port received it in, which the worker parses, encrypts
//! or decrypts, and hands back to a DPDK port without a copy, as DPDK
//! applications do. Both have headroom and tailroom, so ESP grows the frame
//! in place either way.

use espgate_wire::{HeapBuf, PacketBuf, Result};

/// A frame in a pool buffer or a DPDK mbuf.
#[derive(Debug)]
pub enum Packet {
    /// A buffer of the node's [`Mempool`](crate::Mempool).
    Heap(HeapBuf),
    /// A DPDK mbuf, owned until sent or dropped (dropping frees it).
    #[cfg(feature = "dpdk")]
    Mbuf(crate::dpdk::Mbuf),
}

impl From<HeapBuf> for Packet {
    fn from(b: HeapBuf) -> Self {
        Packet::Heap(b)
    }
}

/// Runs `$body` with `$b` bound to the buffer inside, whichever it is.
macro_rules! inner {
    ($packet:expr, $b:ident => $body:expr) => {
        match $packet {
            Packet::Heap($b) => $body,
            #[cfg(feature = "dpdk")]
            Packet::Mbuf($b) => $body,
        }
    };
}

impl PacketBuf for Packet {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        inner!(self, b => b.data())
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        inner!(self, b => b.data_mut())
    }

    #[inline(always)]
    fn headroom(&self) -> usize {
        inner!(self, b => b.headroom())
    }

    #[inline(always)]
    fn tailroom(&self) -> usize {
        inner!(self, b => b.tailroom())
    }

    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8]> {
        inner!(self, b => b.prepend(n))
    }

    #[inline(always)]
    fn append(&mut self, n: usize) -> Result<&mut [u8]> {
        inner!(self, b => b.append(n))
    }

    #[inline(always)]
    fn adj(&mut self, n: usize) -> Result<()> {
        inner!(self, b => b.adj(n))
    }

    #[inline(always)]
    fn trim(&mut self, n: usize) -> Result<()> {
        inner!(self, b => b.trim(n))
    }
}
