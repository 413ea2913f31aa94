//! AES-GCM from `ring`.

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::{AeadAlgorithm, AuthFailed, GcmCipher, NONCE_LEN, TAG_LEN};

/// A ring AES-GCM key.
pub struct RingGcm(LessSafeKey);

impl RingGcm {
    /// Expands a key whose length the caller has checked.
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Self {
        let alg = match algorithm {
            AeadAlgorithm::Aes128Gcm => &AES_128_GCM,
            AeadAlgorithm::Aes256Gcm => &AES_256_GCM,
        };
        RingGcm(LessSafeKey::new(
            UnboundKey::new(alg, key).expect("key length checked by GcmKey::new"),
        ))
    }
}

impl GcmCipher for RingGcm {
    #[inline]
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        let t = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), data)
            .expect("ESP payloads are far below AES-GCM's length limit");
        tag.copy_from_slice(t.as_ref());
    }

    #[inline]
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let tag = Tag::from(*tag);
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                tag,
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AuthFailed)
    }
}
