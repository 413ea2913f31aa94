//! AES-GCM behind one small trait, with a backend per cargo feature.
//!
//! `ring` (feature `ring`, the default) is the fast Rust one; RustCrypto's
//! `aes-gcm` (feature `rustcrypto`) is pure Rust. Both can be compiled in;
//! [`Backend::DEFAULT`] is the one a build uses unless told otherwise. A
//! build with neither (a configuration-only user of this crate) has SAs that
//! validate but [`GcmKey::new`] answers [`KeyError::NotCompiled`].
//!
//! A third backend, Intel's intel-ipsec-mb (the library behind DPDK's
//! `crypto_aesni_gcm`), is C reached through FFI, so its code lives in
//! `espgate-io` with the rest of espgate's unsafe code; it plugs in here at
//! start-up through [`install_ipsec_mb`], after which
//! [`Backend::preferred`] picks it.

#[cfg(feature = "ring")]
mod ring_gcm;
#[cfg(feature = "rustcrypto")]
mod rustcrypto_gcm;

use core::fmt;
use core::str::FromStr;
use std::sync::OnceLock;

/// Length of the AES-GCM nonce: 4-byte salt and 8-byte explicit IV.
pub const NONCE_LEN: usize = 12;
/// Length of the ICV (AES-GCM tag) espgate uses.
pub const TAG_LEN: usize = 16;

/// Tag verification failed: the packet is not authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AES-GCM tag does not verify")]
pub struct AuthFailed;

/// AES-GCM in place with a detached 16-byte tag.
pub trait GcmCipher {
    /// Encrypts `data` in place and writes the tag over `aad` and the
    /// ciphertext into `tag` (in ESP, the ICV's place in the packet: no
    /// copy on the way).
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    );

    /// Verifies `tag` and decrypts `data` in place. On failure `data` may
    /// hold garbage and must be dropped.
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed>;
}

/// The AEAD transforms espgate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    /// AES-128-GCM with a 16-byte ICV (RFC 4106; IKEv2 transform 20, 128-bit key).
    Aes128Gcm,
    /// AES-256-GCM with a 16-byte ICV (RFC 4106; IKEv2 transform 20, 256-bit key).
    Aes256Gcm,
}

impl AeadAlgorithm {
    /// AES key length in bytes (without the 4-byte salt).
    pub fn key_len(self) -> usize {
        match self {
            AeadAlgorithm::Aes128Gcm => 16,
            AeadAlgorithm::Aes256Gcm => 32,
        }
    }

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            AeadAlgorithm::Aes128Gcm => "aes-128-gcm",
            AeadAlgorithm::Aes256Gcm => "aes-256-gcm",
        }
    }
}

impl fmt::Display for AeadAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AeadAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aes-128-gcm" => Ok(AeadAlgorithm::Aes128Gcm),
            "aes-256-gcm" => Ok(AeadAlgorithm::Aes256Gcm),
            _ => Err(format!(
                "unknown AEAD algorithm {s:?} (want aes-128-gcm or aes-256-gcm)"
            )),
        }
    }
}

/// An AES-GCM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `ring`'s AES-GCM.
    Ring,
    /// RustCrypto's `aes-gcm`.
    RustCrypto,
    /// Intel's intel-ipsec-mb, once [`install_ipsec_mb`] has plugged it in.
    IpsecMb,
}

impl Backend {
    /// The backend this build uses by default: ring when compiled in.
    #[cfg(feature = "ring")]
    pub const DEFAULT: Backend = Backend::Ring;
    /// The backend this build uses by default: ring when compiled in.
    #[cfg(all(not(feature = "ring"), feature = "rustcrypto"))]
    pub const DEFAULT: Backend = Backend::RustCrypto;
    /// No backend is compiled in: keys cannot be made.
    #[cfg(not(any(feature = "ring", feature = "rustcrypto")))]
    pub const DEFAULT: Backend = Backend::Ring;

    /// Every backend compiled into this build.
    pub fn compiled() -> &'static [Backend] {
        &[
            #[cfg(feature = "ring")]
            Backend::Ring,
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto,
        ]
    }

    /// Every backend this process can use: those compiled in, and
    /// intel-ipsec-mb once installed.
    pub fn available() -> Vec<Backend> {
        let mut all = Backend::compiled().to_vec();
        if IPSEC_MB.get().is_some() {
            all.push(Backend::IpsecMb);
        }
        all
    }

    /// The fastest backend this process can use: intel-ipsec-mb when
    /// installed, else [`Backend::DEFAULT`].
    pub fn preferred() -> Backend {
        if IPSEC_MB.get().is_some() {
            Backend::IpsecMb
        } else {
            Backend::DEFAULT
        }
    }

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
            Backend::IpsecMb => "ipsec-mb",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = match s {
            "ring" => Backend::Ring,
            "rustcrypto" => Backend::RustCrypto,
            "ipsec-mb" => Backend::IpsecMb,
            _ => {
                return Err(format!(
                    "unknown crypto backend {s:?} (want ring, rustcrypto or ipsec-mb)"
                ));
            }
        };
        if Backend::available().contains(&b) {
            Ok(b)
        } else {
            Err(format!(
                "crypto backend {s} is not available in this build (ipsec-mb needs the ipsec-mb feature)"
            ))
        }
    }
}

/// Why a key could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key has the wrong length for the algorithm.
    #[error("{algorithm} needs a {want}-byte key, got {got}")]
    Length {
        /// The algorithm.
        algorithm: AeadAlgorithm,
        /// Bytes wanted.
        want: usize,
        /// Bytes given.
        got: usize,
    },
    /// The backend is not compiled into this build (or, for
    /// intel-ipsec-mb, not installed).
    #[error("crypto backend {0} is not available in this build")]
    NotCompiled(Backend),
}

/// An AES-GCM key of a backend that lives outside this crate.
pub type ExternalKey = Box<dyn GcmCipher + Send + Sync>;

/// Expands a key (its length checked for the algorithm) for a backend that
/// lives outside this crate.
pub type KeyExpander = fn(AeadAlgorithm, &[u8]) -> ExternalKey;

static IPSEC_MB: OnceLock<KeyExpander> = OnceLock::new();

/// Plugs intel-ipsec-mb in as [`Backend::IpsecMb`] for the rest of the
/// process (`espgate-io` with its `ipsec-mb` feature does this). A second
/// call changes nothing.
pub fn install_ipsec_mb(expand: KeyExpander) {
    let _ = IPSEC_MB.set(expand);
}

/// An expanded AES-GCM key of one backend.
#[allow(
    clippy::large_enum_variant,
    reason = "ring's key stays inline in the SA for locality on the fast path"
)]
pub enum GcmKey {
    /// ring.
    #[cfg(feature = "ring")]
    Ring(ring_gcm::RingGcm),
    /// RustCrypto (boxed: its key schedule and GHASH tables are large).
    #[cfg(feature = "rustcrypto")]
    RustCrypto(Box<rustcrypto_gcm::RustCryptoGcm>),
    /// intel-ipsec-mb, expanded by the installed [`KeyExpander`].
    IpsecMb(ExternalKey),
}

impl fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcmKey({}, <secret>)", self.backend())
    }
}

impl GcmKey {
    /// Expands `key` (without salt) for `algorithm` with `backend`.
    pub fn new(backend: Backend, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, KeyError> {
        if key.len() != algorithm.key_len() {
            return Err(KeyError::Length {
                algorithm,
                want: algorithm.key_len(),
                got: key.len(),
            });
        }
        match backend {
            #[cfg(feature = "ring")]
            Backend::Ring => Ok(GcmKey::Ring(ring_gcm::RingGcm::new(algorithm, key))),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => Ok(GcmKey::RustCrypto(Box::new(
                rustcrypto_gcm::RustCryptoGcm::new(algorithm, key),
            ))),
            Backend::IpsecMb => match IPSEC_MB.get() {
                Some(expand) => Ok(GcmKey::IpsecMb(expand(algorithm, key))),
                None => Err(KeyError::NotCompiled(Backend::IpsecMb)),
            },
            #[allow(unreachable_patterns)]
            other => Err(KeyError::NotCompiled(other)),
        }
    }

    /// The backend behind this key.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "ring")]
            GcmKey::Ring(_) => Backend::Ring,
            #[cfg(feature = "rustcrypto")]
            GcmKey::RustCrypto(_) => Backend::RustCrypto,
            GcmKey::IpsecMb(_) => Backend::IpsecMb,
        }
    }
}

impl GcmCipher for GcmKey {
    #[inline]
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        match self {
            #[cfg(feature = "ring")]
            GcmKey::Ring(k) => k.seal_in_place(nonce, aad, data, tag),
            #[cfg(feature = "rustcrypto")]
            GcmKey::RustCrypto(k) => k.seal_in_place(nonce, aad, data, tag),
            GcmKey::IpsecMb(k) => k.seal_in_place(nonce, aad, data, tag),
        }
    }

    #[inline]
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        match self {
            #[cfg(feature = "ring")]
            GcmKey::Ring(k) => k.open_in_place(nonce, aad, data, tag),
            #[cfg(feature = "rustcrypto")]
            GcmKey::RustCrypto(k) => k.open_in_place(nonce, aad, data, tag),
            GcmKey::IpsecMb(k) => k.open_in_place(nonce, aad, data, tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM spec (McGrew and Viega) test case 4, for both key sizes'
    /// plumbing: 128-bit key, 60-byte plaintext, 20-byte AAD.
    #[test]
    fn gcm_spec_test_case_4_every_backend() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
        let nonce: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let ct = hex::decode(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        )
        .unwrap();
        let tag = hex::decode("5bc94fbc3221a5db94fae95ae7121a47").unwrap();
        for &b in Backend::compiled() {
            let k = GcmKey::new(b, AeadAlgorithm::Aes128Gcm, &key).unwrap();
            let mut buf = pt.clone();
            let mut t = [0u8; TAG_LEN];
            k.seal_in_place(&nonce, &aad, &mut buf, &mut t);
            assert_eq!(buf, ct, "{b}");
            assert_eq!(&t[..], &tag[..], "{b}");
            k.open_in_place(&nonce, &aad, &mut buf, &t).unwrap();
            assert_eq!(buf, pt, "{b}");
            let mut bad = t;
            bad[0] ^= 1;
            let mut buf = ct.clone();
            assert_eq!(
                k.open_in_place(&nonce, &aad, &mut buf, &bad),
                Err(AuthFailed)
            );
        }
    }

    #[test]
    fn wrong_key_length() {
        assert!(matches!(
            GcmKey::new(Backend::DEFAULT, AeadAlgorithm::Aes256Gcm, &[0; 16]),
            Err(KeyError::Length {
                want: 32,
                got: 16,
                ..
            })
        ));
    }
}
