//! Sealing and opening mirror frames: HMAC-SHA-256 over header and
//! records, truncated to 16 bytes (as IPsec's HMAC-SHA-256-128).

use espgate_wire::mirror::{self, MAC_LEN, MirrorHeader, MirrorRecord};
use ring::hmac;

/// The key that authenticates mirror frames (from the configuration; the
/// same on both nodes, never sent on the mirror link). Cloning copies the
/// key schedule: a cloned node (tests explore a pair by cloning it) signs
/// as the original does.
#[derive(Clone)]
pub struct MirrorKey(hmac::Key);

impl std::fmt::Debug for MirrorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MirrorKey(<secret>)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mirror key of {0} bytes is too short (want at least 16)")]
pub struct ShortKey(pub usize);

impl MirrorKey {
    /// A key from at least 16 bytes of secret.
    pub fn new(secret: &[u8]) -> Result<Self, ShortKey> {
        if secret.len() < 16 {
            return Err(ShortKey(secret.len()));
        }
        Ok(MirrorKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    fn tag(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let t = hmac::sign(&self.0, data);
        t.as_ref()[..MAC_LEN].try_into().expect("32-byte HMAC")
    }

    /// Whether the 16 bytes after the header and records of `frame` (as
    /// its length field places them; link padding may follow) are its MAC
    /// (constant time).
    pub fn verify(&self, frame: &[u8]) -> bool {
        let Ok(frame) = mirror::unpadded(frame) else {
            return false;
        };
        let (data, mac) = frame.split_at(frame.len() - MAC_LEN);
        let want = self.tag(data);
        // Constant-time comparison of the truncated tag.
        want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl MirrorKey {
    /// Appends the MAC to an already encoded header and records, whose
    /// length field it sets (tests and fuzzing build odd frames this way).
    pub fn seal_raw(&self, body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        if out.len() >= mirror::HEADER_LEN {
            mirror::set_length(&mut out);
        }
        let tag = self.tag(&out);
        out.extend(tag);
        out
    }
}

/// Builds a sealed frame (without the Ethernet header) from a header and
/// its records; the header's record count is set from `records`.
pub fn seal(key: &MirrorKey, header: MirrorHeader, records: &[MirrorRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mirror::HEADER_LEN + 64 * records.len() + MAC_LEN);
    MirrorHeader {
        records: records.len() as u16,
        ..header
    }
    .emit(&mut out);
    for r in records {
        r.emit(&mut out);
    }
    mirror::set_length(&mut out);
    let tag = key.tag(&out);
    out.extend(tag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> MirrorKey {
        MirrorKey::new(&[b; 32]).unwrap()
    }

    fn sample() -> Vec<u8> {
        let h = MirrorHeader {
            flags: 0,
            records: 0,
            node: 7,
            epoch: 11,
            counter: 5,
            peer_epoch: 3,
        };
        seal(
            &key(1),
            h,
            &[
                MirrorRecord::BulkPart {
                    bulk: 1,
                    part: 0,
                    parts: 3,
                    last: false,
                },
                MirrorRecord::BulkRequest,
            ],
        )
    }

    #[test]
    fn sealed_frames_verify_and_parse() {
        let f = sample();
        assert!(key(1).verify(&f));
        assert!(!key(2).verify(&f), "another key");
        let (h, r) = mirror::parse_records(&f).unwrap();
        assert_eq!((h.node, h.records, r.len()), (7, 2, 2));
        assert!(MirrorKey::new(&[0; 15]).is_err());
    }

    proptest! {
        #[test]
        fn any_flipped_bit_breaks_the_mac(at in 0usize..1000, bit in 0u8..8) {
            let mut f = sample();
            let at = at % f.len();
            f[at] ^= 1 << bit;
            prop_assert!(!key(1).verify(&f));
        }
    }
}
