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
}
