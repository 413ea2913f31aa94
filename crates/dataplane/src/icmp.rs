//! ICMP errors the gateway sends: "fragmentation needed" (IPv4) and
//! "packet too big" (IPv6) when an encapsulated packet would exceed the
//! unprotected link's MTU, so the sender lowers its path MTU (RFC 1191,
//! RFC 8201). espgate never fragments: it answers every oversized packet,
//! DF set or not, with one of these.

use std::net::IpAddr;

use espgate_wire::checksum;
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Repr;
use espgate_wire::ipv6::Ipv6Repr;

/// The ICMP error for `offender`, from `from`, telling it `mtu`: an IP
/// packet (no Ethernet header), or `None` if `offender` is not IP or is
/// itself an ICMP error.
pub fn too_big(offender: &[u8], from: IpAddr, mtu: usize) -> Option<Vec<u8>> {
    match (offender.first()? >> 4, from) {
        (4, IpAddr::V4(from)) => {
            let hl = usize::from(offender[0] & 0x0f) * 4;
            if offender.len() < hl + 8
                || offender[9] == protocol::ICMP && matches!(offender[hl], 3 | 4 | 5 | 11 | 12)
            {
                return None;
            }
            let src =
                std::net::Ipv4Addr::new(offender[12], offender[13], offender[14], offender[15]);
            let quote = &offender[..hl + 8];
            let mut icmp = vec![3, 4, 0, 0, 0, 0];
            icmp.extend((mtu.min(65535) as u16).to_be_bytes());
            icmp.extend(quote);
            let c = checksum::checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut pkt = vec![0u8; 20 + icmp.len()];
            Ipv4Repr {
                src: from,
                dst: src,
                protocol: protocol::ICMP,
                payload_len: icmp.len(),
                ttl: 64,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: false,
            }
            .emit(&mut pkt)
            .ok()?;
            pkt[20..].copy_from_slice(&icmp);
            Some(pkt)
        }
        (6, IpAddr::V6(from)) => {
            if offender.len() < 40
                || offender[6] == protocol::ICMPV6 && offender.get(40).is_some_and(|t| *t < 128)
            {
                return None;
            }
            let src = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&offender[8..24]).ok()?);
            // As much of the offender as fits in the IPv6 minimum MTU.
            let quote = &offender[..offender.len().min(1280 - 48)];
            let mut icmp = vec![2, 0, 0, 0];
            icmp.extend((mtu as u32).to_be_bytes());
            icmp.extend(quote);
            Some(icmpv6_packet(from, src, 64, icmp))
        }
        _ => None,
    }
}

/// The all-nodes multicast address and its Ethernet address.
pub const ALL_NODES: (std::net::Ipv6Addr, [u8; 6]) = (
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    [0x33, 0x33, 0, 0, 0, 1],
);

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) that `addr` is
/// at `mac`, override flag set, to all nodes: the IPv6 counterpart of a
/// gratuitous ARP. Returns the IPv6 packet.
pub fn unsolicited_na(addr: std::net::Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend(addr.octets());
    icmp.extend([2, 1]);
    icmp.extend(mac);
    icmpv6_packet(addr, ALL_NODES.0, 255, icmp)
}

/// An IPv6 packet carrying ICMPv6 message `icmp` (its checksum field
/// filled in here, over the pseudo-header).
fn icmpv6_packet(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    hop_limit: u8,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let sum = checksum::pseudo_header(
        &IpAddr::V6(src),
        &IpAddr::V6(dst),
        protocol::ICMPV6,
        icmp.len() as u32,
    );
    let c = !checksum::fold(checksum::accumulate(sum, &icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut pkt = vec![0u8; 40 + icmp.len()];
    Ipv6Repr {
        src,
        dst,
        next_header: protocol::ICMPV6,
        payload_len: icmp.len(),
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut pkt)
    .expect("a 40-byte header fits");
    pkt[40..].copy_from_slice(&icmp);
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsolicited_na_overrides_and_verifies() {
        let addr: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 9];
        let pkt = unsolicited_na(addr, mac);
        assert_eq!(pkt.len(), 72);
        assert_eq!(
            (pkt[6], pkt[7]),
            (protocol::ICMPV6, 255),
            "ICMPv6, hop limit 255"
        );
        assert_eq!(&pkt[24..40], &ALL_NODES.0.octets());
        let icmp = &pkt[40..];
        assert_eq!(
            (icmp[0], icmp[4]),
            (136, 0x20),
            "advertisement with override"
        );
        assert_eq!(&icmp[8..24], &addr.octets());
        assert_eq!(
            &icmp[24..32],
            &[2, 1, 2, 0, 0, 0, 0, 9],
            "target link-layer address"
        );
        let sum = checksum::pseudo_header(
            &IpAddr::V6(addr),
            &IpAddr::V6(ALL_NODES.0),
            protocol::ICMPV6,
            32,
        );
        assert_eq!(checksum::fold(checksum::accumulate(sum, icmp)), 0xffff);
    }
    use espgate_wire::ipv4::Ipv4Packet;

    #[test]
    fn ipv4_frag_needed_quotes_header_and_8_bytes() {
        let mut off = vec![0u8; 1500];
        Ipv4Repr {
            src: "10.1.0.1".parse().unwrap(),
            dst: "10.2.0.1".parse().unwrap(),
            protocol: protocol::UDP,
            payload_len: 1480,
            ttl: 63,
            dscp_ecn: 0,
            ident: 9,
            dont_frag: true,
        }
        .emit(&mut off)
        .unwrap();
        let icmp = too_big(&off, "10.1.0.254".parse().unwrap(), 1438).unwrap();
        let p = Ipv4Packet::new_checked(&icmp[..]).unwrap();
        assert_eq!(p.dst().to_string(), "10.1.0.1");
        let body = p.payload();
        assert_eq!((body[0], body[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1438);
        assert_eq!(&body[8..], &off[..28]);
        assert_eq!(checksum::checksum(body), 0);
    }

    #[test]
    fn ipv6_packet_too_big_fits_the_minimum_mtu() {
        let mut off = vec![0u8; 1500];
        Ipv6Repr {
            src: "2001:db8:a::1".parse().unwrap(),
            dst: "2001:db8:b::1".parse().unwrap(),
            next_header: protocol::UDP,
            payload_len: 1460,
            hop_limit: 63,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut off)
        .unwrap();
        let from: IpAddr = "2001:db8:a::fe".parse().unwrap();
        let icmp = too_big(&off, from, 1400).unwrap();
        assert!(icmp.len() <= 1280);
        let p = espgate_wire::ipv6::Ipv6Packet::new_checked(&icmp[..]).unwrap();
        assert_eq!(
            (p.next_header(), p.dst().to_string()),
            (protocol::ICMPV6, "2001:db8:a::1".to_string())
        );
        let body = p.payload();
        assert_eq!((body[0], body[1]), (2, 0));
        assert_eq!(u32::from_be_bytes(body[4..8].try_into().unwrap()), 1400);
        let sum = checksum::pseudo_header(
            &from,
            &"2001:db8:a::1".parse().unwrap(),
            protocol::ICMPV6,
            body.len() as u32,
        );
        assert_eq!(checksum::fold(checksum::accumulate(sum, body)), 0xffff);
        // No error about an error.
        let mut err = icmp.clone();
        err[6] = protocol::ICMPV6;
        assert!(too_big(&err, from, 1400).is_none());
    }
}
