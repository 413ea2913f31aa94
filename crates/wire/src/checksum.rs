//! The Internet checksum (RFC 1071) and the UDP pseudo-header sums.

use crate::ip::{IpAddr, IpAddrExt};

/// Adds `data` to a running one's-complement sum (not yet folded).
pub fn accumulate(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        sum += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a running sum to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data`: the complement of the folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(accumulate(0, data))
}

/// The running sum of the pseudo-header used by UDP over IPv4 or IPv6.
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: u8, length: u32) -> u64 {
    let mut sum = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = accumulate(sum, &s.octets());
            sum = accumulate(sum, &d.octets());
        }
        (s, d) => {
            sum = accumulate(sum, &s.to_v6_octets());
            sum = accumulate(sum, &d.to_v6_octets());
        }
    }
    sum + u64::from(protocol) + u64::from(length)
}

/// Fills in the TCP or UDP checksum of Ethernet `frame` (one 802.1Q tag
/// at most) over its pseudo-header and segment, as a device would have:
/// what a frame the kernel left that to the device needs (its
/// `CHECKSUM_PARTIAL`, which an AF_PACKET socket sees as
/// `TP_STATUS_CSUMNOTREADY`: the checksum field holds a partial sum, not
/// the checksum). Returns whether it did; a frame that is not an
/// unfragmented TCP or UDP packet over IPv4, or over IPv6 with no
/// extension headers but hop-by-hop and destination options, is left as
/// it is.
pub fn complete_transport(frame: &mut [u8]) -> bool {
    use crate::ethernet::{EtherType, EthernetFrame};
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let ethertype = eth.ethertype();
    let packet = eth.payload_mut();
    match ethertype {
        EtherType::IPV4 => complete_v4(packet),
        EtherType::IPV6 => complete_v6(packet),
        _ => false,
    }
}

fn complete_v4(p: &mut [u8]) -> bool {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let fragment = u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0;
    if ihl < 20 || total < ihl || total > p.len() || fragment {
        return false;
    }
    let proto = p[9];
    let (header, segment) = p[..total].split_at_mut(ihl);
    let pseudo = accumulate(0, &header[12..20]) + u64::from(proto) + segment.len() as u64;
    fill_transport(proto, pseudo, segment)
}

fn complete_v6(p: &mut [u8]) -> bool {
    const HOP_BY_HOP: u8 = 0;
    const DESTINATION_OPTIONS: u8 = 60;
    if p.len() < 40 || p[0] >> 4 != 6 {
        return false;
    }
    let end = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
    if end > p.len() {
        return false;
    }
    let (mut next, mut at) = (p[6], 40);
    while matches!(next, HOP_BY_HOP | DESTINATION_OPTIONS) {
        if at + 2 > end {
            return false;
        }
        next = p[at];
        at += (usize::from(p[at + 1]) + 1) * 8;
    }
    if at > end {
        return false;
    }
    let (header, segment) = p[..end].split_at_mut(at);
    let pseudo = accumulate(0, &header[8..40]) + u64::from(next) + segment.len() as u64;
    fill_transport(next, pseudo, segment)
}

/// Writes the checksum of TCP or UDP `segment` whose pseudo-header sums
/// to `pseudo`.
fn fill_transport(proto: u8, pseudo: u64, segment: &mut [u8]) -> bool {
    use crate::ip::protocol;
    let (at, header_len) = match proto {
        protocol::TCP => (16, 20),
        protocol::UDP => (6, 8),
        _ => return false,
    };
    if segment.len() < header_len {
        return false;
    }
    segment[at..at + 2].fill(0);
    let c = !fold(accumulate(pseudo, segment));
    // A UDP checksum of 0 means none: the one's complement's other zero.
    let c = if c == 0 && proto == protocol::UDP {
        0xffff
    } else {
        c
    };
    segment[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(accumulate(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_matches_word_sum(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut s: u64 = 0;
            for c in data.chunks(2) {
                let hi = u64::from(c[0]) << 8;
                let lo = c.get(1).copied().map_or(0, u64::from);
                s += hi | lo;
            }
            proptest::prop_assert_eq!(fold(accumulate(0, &data)), fold(s));
        }
    }

    /// An Ethernet frame (tagged with VLAN 7 if `tagged`) carrying
    /// `packet`.
    fn frame(ethertype: u16, tagged: bool, packet: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    fn ipv4(proto: u8, segment: &[u8]) -> Vec<u8> {
        let total = (20 + segment.len()) as u16;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let c = checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(segment);
        p
    }

    fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(rest);
        p
    }

    /// A UDP datagram of `body` from port 1000 to 2000, checksum 0.
    fn udp(body: &[u8]) -> Vec<u8> {
        let mut u = vec![0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 0];
        u[4..6].copy_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        u.extend_from_slice(body);
        u
    }

    /// A TCP segment of `body`, checksum 0.
    fn tcp(body: &[u8]) -> Vec<u8> {
        let mut t = vec![
            0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
        ];
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(body);
        t
    }

    /// The one's-complement sum of a segment and its pseudo-header with
    /// its checksum in: 0xffff when the checksum is right.
    fn verify(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> u16 {
        let sum = accumulate(accumulate(0, src), dst) + u64::from(proto) + segment.len() as u64;
        fold(accumulate(sum, segment))
    }

    /// What the kernel leaves in a CHECKSUM_PARTIAL packet's checksum
    /// field: the folded pseudo-header sum, not complemented.
    fn partial(f: &mut [u8], at: usize, pseudo: u64) {
        f[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
    }

    #[test]
    fn udp_and_tcp_over_ipv4_are_completed_behind_a_tag_or_not() {
        for tagged in [false, true] {
            for (proto, segment, field) in
                [(17u8, udp(b"hello, far host"), 6), (6, tcp(b"GET /"), 16)]
            {
                let mut f = frame(0x0800, tagged, &ipv4(proto, &segment));
                let l4 = f.len() - segment.len();
                let pseudo = accumulate(0, &[10, 1, 0, 1, 10, 2, 0, 1])
                    + u64::from(proto)
                    + segment.len() as u64;
                partial(&mut f, l4 + field, pseudo);
                assert!(complete_transport(&mut f));
                assert_eq!(
                    verify(&[10, 1, 0, 1], &[10, 2, 0, 1], proto, &f[l4..]),
                    0xffff
                );
            }
        }
    }

    #[test]
    fn padding_after_the_ipv4_packet_is_not_summed() {
        let segment = udp(b"x");
        let mut f = frame(0x0800, false, &ipv4(17, &segment));
        let l4 = f.len() - segment.len();
        f.extend_from_slice(&[0xaa; 20]); // a short frame padded to 60 bytes and more
        assert!(complete_transport(&mut f));
        let end = f.len() - 20;
        assert_eq!(
            verify(&[10, 1, 0, 1], &[10, 2, 0, 1], 17, &f[l4..end]),
            0xffff
        );
    }

    #[test]
    fn udp_over_ipv6_behind_hop_by_hop_options_is_completed() {
        let segment = udp(b"over six");
        let mut rest = vec![17, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop: PadN
        rest.extend_from_slice(&segment);
        let mut f = frame(0x86dd, false, &ipv6(0, &rest));
        let l4 = f.len() - segment.len();
        assert!(complete_transport(&mut f));
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(verify(&src, &dst, 17, &f[l4..]), 0xffff);
    }

    #[test]
    fn a_udp_sum_of_zero_is_sent_as_ffff() {
        // Find a body whose checksum comes out 0, then check it reads ffff.
        for n in 0..=u16::MAX {
            let mut f = frame(0x0800, false, &ipv4(17, &udp(&n.to_be_bytes())));
            assert!(complete_transport(&mut f));
            let l4 = f.len() - 10;
            let c = u16::from_be_bytes([f[l4 + 6], f[l4 + 7]]);
            assert_ne!(c, 0);
            if c == 0xffff {
                assert_eq!(verify(&[10, 1, 0, 1], &[10, 2, 0, 1], 17, &f[l4..]), 0xffff);
                return;
            }
        }
        panic!("no body summed to zero");
    }

    #[test]
    fn what_is_not_whole_tcp_or_udp_is_left_as_it_is() {
        let mut fragment = ipv4(17, &udp(b"first fragment"));
        fragment[6] |= 0x20; // more fragments
        let mut routed = vec![17, 0, 0, 0, 0, 0, 0, 0]; // a routing header
        routed.extend_from_slice(&udp(b"x"));
        let cases = [
            frame(0x0800, false, &fragment),
            frame(0x0800, false, &ipv4(1, &[8, 0, 0, 0, 0, 1, 0, 1])),
            frame(0x86dd, false, &ipv6(43, &routed)),
            frame(0x0806, false, &[0; 28]),
            frame(0x0800, false, &ipv4(6, &[0; 12])),
            frame(0x0800, false, &ipv4(17, &udp(b"cut"))[..30]),
        ];
        for (i, c) in cases.iter().enumerate() {
            let mut f = c.clone();
            assert!(!complete_transport(&mut f), "case {i}");
            assert_eq!(&f, c, "case {i}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_taken_without_a_panic(mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = complete_transport(&mut data);
        }

        #[test]
        fn a_completed_udp_checksum_verifies(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let segment = udp(&body);
            let mut f = frame(0x0800, false, &ipv4(17, &segment));
            let l4 = f.len() - segment.len();
            proptest::prop_assert!(complete_transport(&mut f));
            proptest::prop_assert_eq!(verify(&[10, 1, 0, 1], &[10, 2, 0, 1], 17, &f[l4..]), 0xffff);
        }
    }
}
