//! The ESP use of AES-GCM (RFC 4106): nonce = salt || IV, AAD = SPI ||
//! sequence number (32 bits, or 64 with ESN), ICV = the 16-byte tag.

use crate::aead::{
    AeadAlgorithm, AuthFailed, Backend, GcmCipher, GcmKey, KeyError, NONCE_LEN, TAG_LEN,
};

/// Length of the RFC 4106 salt that follows the AES key in the key material.
pub const SALT_LEN: usize = 4;
/// Length of the explicit IV carried in each packet.
pub const IV_LEN: usize = 8;

/// An SA's AES-GCM key with its salt and ESN flag: everything needed to seal
/// or open one ESP payload.
#[derive(Debug)]
pub struct EspCipher {
    key: GcmKey,
    salt: [u8; SALT_LEN],
    esn: bool,
}

impl EspCipher {
    /// Builds the cipher from the key material as IKEv2 and DPDK's
    /// ipsec-secgw give it: the AES key followed by the 4-byte salt.
    pub fn new(
        backend: Backend,
        algorithm: AeadAlgorithm,
        key_and_salt: &[u8],
        esn: bool,
    ) -> Result<Self, KeyError> {
        let want = algorithm.key_len() + SALT_LEN;
        if key_and_salt.len() != want {
            return Err(KeyError::Length {
                algorithm,
                want,
                got: key_and_salt.len(),
            });
        }
        let (key, salt) = key_and_salt.split_at(algorithm.key_len());
        Ok(EspCipher {
            key: GcmKey::new(backend, algorithm, key)?,
            salt: salt.try_into().expect("4-byte salt"),
            esn,
        })
    }

    /// Whether the sequence number's high half enters the AAD.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// The backend doing the work.
    pub fn backend(&self) -> Backend {
        self.key.backend()
    }

    #[inline]
    fn nonce(&self, iv: &[u8; IV_LEN]) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        n
    }

    /// Writes the AAD for (`spi`, `seq`) into `buf` and returns its length
    /// (8, or 12 with ESN).
    #[inline]
    fn aad(&self, spi: u32, seq: u64, buf: &mut [u8; 12]) -> usize {
        buf[..4].copy_from_slice(&spi.to_be_bytes());
        if self.esn {
            buf[4..].copy_from_slice(&seq.to_be_bytes());
            12
        } else {
            buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
            8
        }
    }

    /// Encrypts an ESP payload (inner packet, padding, pad length, next
    /// header) in place and writes the ICV into `icv`.
    #[inline]
    pub fn seal(
        &self,
        spi: u32,
        seq: u64,
        iv: &[u8; IV_LEN],
        data: &mut [u8],
        icv: &mut [u8; TAG_LEN],
    ) {
        let mut aad = [0u8; 12];
        let n = self.aad(spi, seq, &mut aad);
        self.key
            .seal_in_place(&self.nonce(iv), &aad[..n], data, icv)
    }

    /// Verifies the ICV and decrypts an ESP payload in place.
    #[inline]
    pub fn open(
        &self,
        spi: u32,
        seq: u64,
        iv: &[u8; IV_LEN],
        data: &mut [u8],
        icv: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let mut aad = [0u8; 12];
        let n = self.aad(spi, seq, &mut aad);
        self.key
            .open_in_place(&self.nonce(iv), &aad[..n], data, icv)
    }
}
