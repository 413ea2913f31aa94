//! ARP for IPv4 over Ethernet (RFC 826).

use crate::ethernet::MacAddr;
use crate::ip::Ipv4Addr;
use crate::{Layer, Result, WireError, be16, need, put16};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// Who has `target_ip`?
    Request,
    /// `sender_ip` is at `sender_mac`.
    Reply,
}

/// A view of an ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer after checking its length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(Layer::Arp, buffer.as_ref(), PACKET_LEN)?;
        Ok(ArpPacket { buffer })
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Operation code.
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
}

/// The values of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self> {
        let b = p.buffer.as_ref();
        if p.hardware_type() != 1 || p.protocol_type() != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(WireError::Unsupported {
                layer: Layer::Arp,
                what: "not Ethernet/IPv4 ARP",
            });
        }
        let op = match p.operation() {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            _ => {
                return Err(WireError::Malformed {
                    layer: Layer::Arp,
                    what: "operation is neither request nor reply",
                });
            }
        };
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let mac = |at: usize| MacAddr(b[at..at + 6].try_into().expect("6 bytes"));
        Ok(ArpRepr {
            op,
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        need(Layer::Arp, buf, PACKET_LEN)?;
        put16(buf, 0, 1);
        put16(buf, 2, 0x0800);
        buf[4] = 6;
        buf[5] = 4;
        put16(
            buf,
            6,
            match self.op {
                ArpOp::Request => 1,
                ArpOp::Reply => 2,
            },
        );
        buf[8..14].copy_from_slice(&self.sender_mac.0);
        buf[14..18].copy_from_slice(&self.sender_ip.octets());
        buf[18..24].copy_from_slice(&self.target_mac.0);
        buf[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let r = ArpRepr {
            op: ArpOp::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 1, 0, 1),
            target_mac: MacAddr::default(),
            target_ip: Ipv4Addr::new(10, 1, 0, 2),
        };
        let mut buf = [0u8; PACKET_LEN];
        r.emit(&mut buf).unwrap();
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn bad_operation() {
        let mut buf = [0u8; PACKET_LEN];
        ArpRepr {
            op: ArpOp::Reply,
            sender_mac: MacAddr::default(),
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: MacAddr::default(),
            target_ip: Ipv4Addr::UNSPECIFIED,
        }
        .emit(&mut buf)
        .unwrap();
        buf[7] = 9;
        assert!(matches!(
            ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()),
            Err(WireError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&data[..]) {
                let _ = ArpRepr::parse(&p);
            }
        }
    }
}
