//! AES-GCM from Intel's intel-ipsec-mb (feature `ipsec-mb`; Debian's
//! `libipsec-mb-dev`, which `libdpdk-dev` already pulls in).
//!
//! It is the library behind DPDK's `crypto_aesni_gcm` and `crypto_ipsec_mb`
//! drivers, with hand-written AVX-512/VAES code paths; on this project's
//! machine it seals a 1400-byte payload three times faster than ring. The
//! C shim (`shim.c`) sets up one library manager for the best instruction
//! set of the CPU and hands over its GCM function pointers, which the keys
//! here then call directly. [`install`] plugs the backend into
//! `espgate-esp` as `Backend::IpsecMb`.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use espgate_esp::aead::{
    AeadAlgorithm, AuthFailed, ExternalKey, GcmCipher, NONCE_LEN, TAG_LEN, install_ipsec_mb,
};

/// `aes_gcm_pre_t`: expands a raw AES key into the key data.
type PreFn = unsafe extern "C" fn(key: *const u8, key_data: *mut KeyData);
/// `aes_gcm_enc_dec_t`: one whole GCM operation with a 12-byte IV.
type CryptFn = unsafe extern "C" fn(
    key_data: *const KeyData,
    context: *mut Context,
    dst: *mut u8,
    src: *const u8,
    len: u64,
    iv: *const u8,
    aad: *const u8,
    aad_len: u64,
    tag: *mut u8,
    tag_len: u64,
);

/// What the shim fills in (`struct espgate_imb` in `shim.c`).
#[repr(C)]
struct Library {
    pre128: Option<PreFn>,
    pre256: Option<PreFn>,
    enc128: Option<CryptFn>,
    dec128: Option<CryptFn>,
    enc256: Option<CryptFn>,
    dec256: Option<CryptFn>,
    key_data_size: u64,
    context_size: u64,
    context_align: u64,
    arch: i32,
    error: i32,
}

unsafe extern "C" {
    fn espgate_imb_init(out: *mut Library) -> c_int;
    fn imb_get_strerror(errnum: c_int) -> *const c_char;
}

/// Room for the library's `struct gcm_key_data` (1008 bytes in 1.3: round
/// keys and GHASH powers), cache-line aligned.
#[repr(C, align(64))]
struct KeyData([u8; 1024]);

/// Room for the library's `struct gcm_context_data` (88 bytes in 1.3), the
/// scratch state of one operation.
#[repr(C, align(64))]
struct Context([u8; 128]);

/// The library's GCM entry points for one key size.
#[derive(Clone, Copy)]
struct Entry {
    pre: PreFn,
    enc: CryptFn,
    dec: CryptFn,
}

/// The library, set up once per process.
struct Setup {
    aes128: Entry,
    aes256: Entry,
    arch: i32,
}

static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();

fn setup() -> &'static Result<Setup, String> {
    SETUP.get_or_init(|| {
        let mut lib = MaybeUninit::<Library>::zeroed();
        // SAFETY: `lib` is a valid, writable `struct espgate_imb` (same
        // layout, all-zero is a valid value: null function pointers are
        // `None`); the shim only writes into it.
        let rc = unsafe { espgate_imb_init(lib.as_mut_ptr()) };
        // SAFETY: zero-initialised above and only written by the shim with
        // values of the declared types.
        let lib = unsafe { lib.assume_init() };
        if rc != 0 {
            // SAFETY: imb_get_strerror returns a static NUL-terminated
            // string for any error number.
            let msg = unsafe { CStr::from_ptr(imb_get_strerror(lib.error)) };
            return Err(format!(
                "intel-ipsec-mb did not start: {} ({})",
                msg.to_string_lossy(),
                lib.error
            ));
        }
        if lib.key_data_size > size_of::<KeyData>() as u64
            || lib.context_size > size_of::<Context>() as u64
            || lib.context_align > align_of::<Context>() as u64
        {
            return Err(format!(
                "intel-ipsec-mb's GCM structures ({} and {} bytes) are larger than espgate reserves",
                lib.key_data_size, lib.context_size
            ));
        }
        let entry = |pre, enc, dec| match (pre, enc, dec) {
            (Some(pre), Some(enc), Some(dec)) => Ok(Entry { pre, enc, dec }),
            _ => Err("intel-ipsec-mb has no AES-GCM for this CPU".to_string()),
        };
        Ok(Setup {
            aes128: entry(lib.pre128, lib.enc128, lib.dec128)?,
            aes256: entry(lib.pre256, lib.enc256, lib.dec256)?,
            arch: lib.arch,
        })
    })
}

/// Sets the library up (once) and plugs it into `espgate-esp` as
/// `Backend::IpsecMb`; returns the instruction set it chose. After this,
/// `Backend::preferred()` is intel-ipsec-mb.
pub fn install() -> Result<&'static str, String> {
    let setup = setup().as_ref().map_err(Clone::clone)?;
    install_ipsec_mb(expand);
    Ok(arch_name(setup.arch))
}

/// The name of the library's code path (`IMB_ARCH` in its header).
fn arch_name(arch: i32) -> &'static str {
    match arch {
        1 => "no-aesni",
        2 => "sse",
        3 => "avx",
        4 => "avx2",
        5 => "avx512",
        _ => "unknown",
    }
}

fn expand(algorithm: AeadAlgorithm, key: &[u8]) -> ExternalKey {
    Box::new(IpsecMbGcm::new(algorithm, key))
}

/// An expanded intel-ipsec-mb AES-GCM key; wiped when dropped.
pub struct IpsecMbGcm {
    data: Box<KeyData>,
    entry: Entry,
}

impl IpsecMbGcm {
    /// Expands `key` for `algorithm`.
    ///
    /// # Panics
    /// If `key` has the wrong length for `algorithm` (`GcmKey::new` checks
    /// it first), or if [`install`] has not set the library up.
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Self {
        assert_eq!(key.len(), algorithm.key_len(), "AES key length");
        let setup = setup()
            .as_ref()
            .expect("intel-ipsec-mb is set up before keys are made");
        let entry = match algorithm {
            AeadAlgorithm::Aes128Gcm => setup.aes128,
            AeadAlgorithm::Aes256Gcm => setup.aes256,
        };
        let mut data = Box::new(KeyData([0; 1024]));
        // SAFETY: `key` holds the algorithm's key length (asserted above);
        // `data` is writable and at least as large as the library's
        // `struct gcm_key_data` (checked in `setup`).
        unsafe { (entry.pre)(key.as_ptr(), &mut *data) };
        IpsecMbGcm { data, entry }
    }
}

impl Drop for IpsecMbGcm {
    fn drop(&mut self) {
        for b in self.data.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned byte of our own allocation; a
            // volatile write keeps the wipe from being optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl IpsecMbGcm {
    /// Runs one whole GCM operation of the library (`f`: its encrypt or
    /// decrypt) in place over `data`, writing the tag it computes.
    #[inline]
    fn run(
        &self,
        f: CryptFn,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        let mut context = MaybeUninit::<Context>::uninit();
        // SAFETY: `f` is this key's entry and the key data was expanded by
        // the library for it; the context is scratch space the library
        // initialises itself, large and aligned enough (checked in
        // `setup`); source and destination are the same valid buffer of
        // `data.len()` bytes (the library works in place); the IV is 12
        // bytes; `aad` and `tag` are valid for the lengths given.
        unsafe {
            f(
                &*self.data,
                context.as_mut_ptr(),
                data.as_mut_ptr(),
                data.as_ptr(),
                data.len() as u64,
                nonce.as_ptr(),
                aad.as_ptr(),
                aad.len() as u64,
                tag.as_mut_ptr(),
                TAG_LEN as u64,
            )
        };
    }
}

impl GcmCipher for IpsecMbGcm {
    #[inline]
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        self.run(self.entry.enc, nonce, aad, data, tag);
    }

    #[inline]
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let mut computed = [0u8; TAG_LEN];
        self.run(self.entry.dec, nonce, aad, data, &mut computed);
        if tags_equal(&computed, tag) {
            Ok(())
        } else {
            Err(AuthFailed)
        }
    }
}

/// Compares two tags in time that does not depend on where they differ.
#[inline]
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use espgate_esp::aead::{Backend, GcmKey};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The GCM specification's (McGrew and Viega) test cases 4 and 16:
    /// 128- and 256-bit keys, 60-byte plaintext, 20-byte AAD.
    #[test]
    fn gcm_spec_test_cases_4_and_16() {
        install().unwrap();
        let pt = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
        let cases = [
            (
                AeadAlgorithm::Aes128Gcm,
                "feffe9928665731c6d6a8f9467308308",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                 21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                AeadAlgorithm::Aes256Gcm,
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        for (alg, key, ct, tag) in cases {
            let k = GcmKey::new(Backend::IpsecMb, alg, &unhex(key)).unwrap();
            assert_eq!(k.backend(), Backend::IpsecMb);
            let mut buf = pt.clone();
            let mut t = [0u8; 16];
            k.seal_in_place(&nonce, &aad, &mut buf, &mut t);
            assert_eq!(buf, unhex(ct), "{alg}");
            assert_eq!(t.to_vec(), unhex(tag), "{alg}");
            k.open_in_place(&nonce, &aad, &mut buf, &t).unwrap();
            assert_eq!(buf, pt, "{alg}");
            let mut bad = t;
            bad[15] ^= 1;
            let mut buf2 = unhex(ct);
            assert_eq!(
                k.open_in_place(&nonce, &aad, &mut buf2, &bad),
                Err(AuthFailed)
            );
        }
    }

    #[test]
    fn installed_backend_is_preferred_and_named() {
        install().unwrap();
        assert_eq!(Backend::preferred(), Backend::IpsecMb);
        assert_eq!("ipsec-mb".parse::<Backend>(), Ok(Backend::IpsecMb));
        assert!(Backend::available().contains(&Backend::IpsecMb));
    }
}
