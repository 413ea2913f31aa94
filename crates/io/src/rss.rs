//! Receive-side scaling: which receive queue a frame lands on. Like a NIC
//! configured for IPsec, ESP is spread by SPI (so one SA's packets stay on
//! one queue), other IP traffic by its addresses and ports, the rest to
//! queue 0.

use espgate_wire::ethernet::{EtherType, EthernetFrame};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;

/// A 32-bit hash of the fields that identify a flow.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    let (proto, l4, addrs): (u8, &[u8], u64) = match eth.ethertype() {
        EtherType::IPV4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(p) => {
                let a = (u64::from(u32::from(p.src())) << 32) | u64::from(u32::from(p.dst()));
                (p.protocol(), &eth.payload()[p.header_len()..], a)
            }
            Err(_) => return 0,
        },
        EtherType::IPV6 => match Ipv6Packet::new_checked(eth.payload()) {
            Ok(p) => {
                let s = u128::from(p.src());
                let d = u128::from(p.dst());
                let a = ((s ^ (s >> 64)) as u64) ^ ((d ^ (d >> 64)) as u64).rotate_left(32);
                (p.next_header(), &eth.payload()[40..], a)
            }
            Err(_) => return 0,
        },
        _ => return 0,
    };
    let key = match proto {
        protocol::ESP if l4.len() >= 4 => {
            u64::from(u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]]))
        }
        // ESP in UDP (port 4500): the SPI follows the UDP header.
        protocol::UDP
            if l4.len() >= 12 && l4[2..4] == [0x11, 0x94] && l4[8..12] != [0, 0, 0, 0] =>
        {
            u64::from(u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]))
        }
        protocol::TCP | protocol::UDP if l4.len() >= 4 => {
            addrs ^ u64::from(u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]])).rotate_left(17)
        }
        _ => addrs,
    };
    mix(key)
}

/// A 64-to-32-bit finaliser (splitmix64's).
fn mix(mut x: u64) -> u32 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esp_frame(spi: u32, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[23] = protocol::ESP;
        f[34..38].copy_from_slice(&spi.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f
    }

    #[test]
    fn esp_hashes_by_spi_only() {
        assert_eq!(
            flow_hash(&esp_frame(0x1000, 1)),
            flow_hash(&esp_frame(0x1000, 99))
        );
        assert_ne!(
            flow_hash(&esp_frame(0x1000, 1)),
            flow_hash(&esp_frame(0x1001, 1))
        );
        assert_eq!(flow_hash(&[1, 2, 3]), 0);
    }
}
