//! UDP headers (RFC 768) with the pseudo-header checksum for IPv4 and IPv6.

use crate::checksum;
use crate::ip::{IpAddr, protocol};
use crate::{Layer, Result, WireError, be16, need, put16};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer after checking the length field against it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Udp, b, HEADER_LEN)?;
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN {
            return Err(WireError::Malformed {
                layer: Layer::Udp,
                what: "length below 8",
            });
        }
        need(Layer::Udp, b, len)?;
        Ok(UdpPacket { buffer })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Whether the datagram carries no payload.
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    /// Checksum field (0: none, allowed over IPv4 only).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// Whether the checksum verifies against the addresses (a zero checksum
    /// counts as valid over IPv4, where it means "none").
    pub fn checksum_valid(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        let sum = checksum::pseudo_header(src, dst, protocol::UDP, u32::from(self.len()));
        checksum::fold(checksum::accumulate(sum, data)) == 0xffff
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Computes and writes the checksum (never 0: 0 becomes ffff).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        let len = usize::from(self.len());
        let b = self.buffer.as_mut();
        put16(b, 6, 0);
        let sum = checksum::pseudo_header(src, dst, protocol::UDP, len as u32);
        let c = !checksum::fold(checksum::accumulate(sum, &b[..len]));
        put16(b, 6, if c == 0 { 0xffff } else { c });
    }
}

/// The values of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads a checked datagram (the checksum is checked separately, since it
    /// needs the IP addresses).
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self> {
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }

    /// Writes the header with a zero checksum into the first 8 bytes of `buf`;
    /// call [`UdpPacket::fill_checksum`] once the payload is in place if a
    /// checksum is wanted.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        need(Layer::Udp, buf, HEADER_LEN)?;
        let len =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed {
                layer: Layer::Udp,
                what: "length above 65535",
            })?;
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put16(buf, 4, len);
        put16(buf, 6, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn checksum_v4_and_v6() {
        for (s, d) in [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let mut buf = [0u8; 13];
            buf[8..].copy_from_slice(b"hello");
            UdpRepr {
                src_port: 1234,
                dst_port: 4500,
                payload_len: 5,
            }
            .emit(&mut buf)
            .unwrap();
            let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
            assert_eq!(p.checksum_valid(&s, &d), s.is_ipv4());
            p.fill_checksum(&s, &d);
            assert!(p.checksum_valid(&s, &d));
            buf[9] ^= 0x40;
            assert!(
                !UdpPacket::new_checked(&buf[..])
                    .unwrap()
                    .checksum_valid(&s, &d)
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = UdpPacket::new_checked(&data[..]) {
                let _ = UdpRepr::parse(&p);
                let _ = p.payload();
                let a: IpAddr = "10.0.0.1".parse().unwrap();
                let _ = p.checksum_valid(&a, &a);
            }
        }
    }
}
