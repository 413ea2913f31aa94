//! A first look at a frame: where it is going in the node.

use std::net::IpAddr;

use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;

/// The SPI of an ESP (or ESP-in-UDP on one of `encap_ports`) packet whose
/// outer destination is one of `own`; `None` for anything else, IKE
/// included.
pub fn esp_spi(ip: &[u8], own: &[IpAddr], encap_ports: &[u16]) -> Option<u32> {
    let (dst, proto, l4): (IpAddr, u8, &[u8]) = match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            (
                p.dst().into(),
                p.protocol(),
                &ip[p.header_len()..usize::from(p.total_len())],
            )
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            (
                p.dst().into(),
                p.next_header(),
                &ip[40..40 + usize::from(p.payload_len())],
            )
        }
        _ => return None,
    };
    if !own.contains(&dst) {
        return None;
    }
    let spi_at = match proto {
        protocol::ESP => 0,
        protocol::UDP
            if l4.len() >= 12 && encap_ports.contains(&u16::from_be_bytes([l4[2], l4[3]])) =>
        {
            if l4[8..12] == [0, 0, 0, 0] {
                return None;
            }
            8
        }
        _ => return None,
    };
    let b = l4.get(spi_at..spi_at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decrements the TTL (IPv4, with an incremental checksum update, RFC 1624)
/// or hop limit (IPv6) of the packet; `false` if it must not be forwarded.
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            if ip[8] <= 1 {
                return false;
            }
            ip[8] -= 1;
            // The TTL is the high byte of its 16-bit word: the sum drops by
            // 0x0100, so the checksum rises by it (one's complement).
            let c = u32::from(u16::from_be_bytes([ip[10], ip[11]])) + 0x0100;
            let c = (c & 0xffff) + (c >> 16);
            ip[10..12].copy_from_slice(&(c as u16).to_be_bytes());
            true
        }
        Some(6) if ip.len() >= 40 => {
            if ip[7] <= 1 {
                return false;
            }
            ip[7] -= 1;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espgate_wire::ipv4::Ipv4Repr;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ttl_decrement_keeps_the_checksum_valid(ttl in 2u8..=255, ident: u16, tos: u8) {
            let mut p = vec![0u8; 28];
            Ipv4Repr {
                src: "10.1.0.1".parse().unwrap(),
                dst: "10.2.0.1".parse().unwrap(),
                protocol: 17,
                payload_len: 8,
                ttl,
                dscp_ecn: tos,
                ident,
                dont_frag: true,
            }
            .emit(&mut p)
            .unwrap();
            prop_assert!(decrement_ttl(&mut p));
            let v = Ipv4Packet::new_checked(&p[..]).unwrap();
            prop_assert_eq!(v.ttl(), ttl - 1);
            prop_assert!(v.checksum_valid());
        }
    }

    #[test]
    fn expired_ttl_is_not_forwarded() {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[8] = 1;
        assert!(!decrement_ttl(&mut p));
    }
}
