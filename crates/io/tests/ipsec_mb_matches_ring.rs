//! intel-ipsec-mb and ring agree on every AES-GCM input: same ciphertext
//! and tag for any key, nonce, AAD (ESP's 8 and 12 bytes, and others) and
//! payload length, and each opens what the other sealed.
#![cfg(feature = "ipsec-mb")]

use espgate_esp::aead::{AeadAlgorithm, AuthFailed, Backend, GcmCipher, GcmKey};
use proptest::prelude::*;

proptest! {
    #[test]
    fn ipsec_mb_matches_ring(
        wide in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 32),
        nonce in any::<[u8; 12]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..24),
        data in proptest::collection::vec(any::<u8>(), 0..2100),
    ) {
        espgate_io::ipsec_mb::install().unwrap();
        let alg = if wide { AeadAlgorithm::Aes256Gcm } else { AeadAlgorithm::Aes128Gcm };
        let key = &key[..alg.key_len()];
        let mb = GcmKey::new(Backend::IpsecMb, alg, key).unwrap();
        let ring = GcmKey::new(Backend::Ring, alg, key).unwrap();
        let mut a = data.clone();
        let mut b = data.clone();
        let (mut ta, mut tb) = ([0u8; 16], [0u8; 16]);
        mb.seal_in_place(&nonce, &aad, &mut a, &mut ta);
        ring.seal_in_place(&nonce, &aad, &mut b, &mut tb);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(ta, tb);
        ring.open_in_place(&nonce, &aad, &mut a, &ta).unwrap();
        prop_assert_eq!(&a, &data);
        mb.open_in_place(&nonce, &aad, &mut b, &tb).unwrap();
        prop_assert_eq!(&b, &data);
        let mut c = data.clone();
        let mut tc = [0u8; 16];
        ring.seal_in_place(&nonce, &aad, &mut c, &mut tc);
        if !c.is_empty() {
            let mut flipped = c.clone();
            flipped[c.len() / 2] ^= 0x80;
            prop_assert_eq!(mb.open_in_place(&nonce, &aad, &mut flipped, &tc), Err(AuthFailed));
        }
    }
}
