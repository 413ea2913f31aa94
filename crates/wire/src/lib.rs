//! Typed views and builders over byte slices for the protocols espgate
//! touches: Ethernet II (with 802.1Q), ARP, IPv4, IPv6, UDP, ESP and
//! espgate's own mirror frames.
//!
//! The style follows smoltcp: a `Packet<T: AsRef<[u8]>>` view gives checked
//! accessors over a buffer (and setters when `T: AsMut<[u8]>`), and a `Repr`
//! parses a view into plain values and emits them back into a buffer.
//! Nothing here performs I/O. The packet headers' views and `Repr`s do
//! not allocate; the mirror frames (emitted into and parsed into `Vec`s)
//! and [`HeapBuf`] do. Truncated or inconsistent input gives a
//! [`WireError`], never a panic.

pub mod arp;
pub mod buf;
pub mod checksum;
pub mod direction;
pub mod error;
pub mod esp;
pub mod ethernet;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod mirror;
pub mod udp;

pub use buf::{HeapBuf, PacketBuf};
pub use direction::Direction;
pub use error::{Layer, WireError};

/// Result type of this crate.
pub type Result<T> = core::result::Result<T, WireError>;

/// Reads a big-endian `u16` at `at`; the caller has checked the length.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian `u32` at `at`; the caller has checked the length.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a big-endian `u16` at `at`; the caller has checked the length.
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`; the caller has checked the length.
#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Fails with [`WireError::Truncated`] unless `buf` holds at least `need` bytes.
#[inline]
pub(crate) fn need(layer: Layer, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(WireError::Truncated {
            layer,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}
