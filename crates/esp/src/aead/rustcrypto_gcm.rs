//! AES-GCM from RustCrypto's `aes-gcm` (on `aes`, `ctr`, `ghash`).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};

use super::{AeadAlgorithm, AuthFailed, GcmCipher, NONCE_LEN, TAG_LEN};

/// A RustCrypto AES-GCM key.
#[allow(
    clippy::large_enum_variant,
    reason = "the whole enum is boxed by GcmKey; only the key sizes differ"
)]
pub enum RustCryptoGcm {
    /// 128-bit key.
    Aes128(Aes128Gcm),
    /// 256-bit key.
    Aes256(Aes256Gcm),
}

impl RustCryptoGcm {
    /// Expands a key whose length the caller has checked.
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Self {
        const CHECKED: &str = "key length checked by GcmKey::new";
        match algorithm {
            AeadAlgorithm::Aes128Gcm => {
                RustCryptoGcm::Aes128(Aes128Gcm::new_from_slice(key).expect(CHECKED))
            }
            AeadAlgorithm::Aes256Gcm => {
                RustCryptoGcm::Aes256(Aes256Gcm::new_from_slice(key).expect(CHECKED))
            }
        }
    }
}

impl GcmCipher for RustCryptoGcm {
    #[inline]
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        let n = Nonce::from(*nonce);
        let t = match self {
            RustCryptoGcm::Aes128(k) => k.encrypt_inout_detached(&n, aad, data.into()),
            RustCryptoGcm::Aes256(k) => k.encrypt_inout_detached(&n, aad, data.into()),
        }
        .expect("ESP payloads are far below AES-GCM's length limit");
        tag.copy_from_slice(&t);
    }

    #[inline]
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let n = Nonce::from(*nonce);
        let t = Tag::from(*tag);
        match self {
            RustCryptoGcm::Aes128(k) => k.decrypt_inout_detached(&n, aad, data.into(), &t),
            RustCryptoGcm::Aes256(k) => k.decrypt_inout_detached(&n, aad, data.into(), &t),
        }
        .map_err(|_| AuthFailed)
    }
}
