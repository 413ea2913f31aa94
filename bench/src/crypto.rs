//! The crypto ceiling of one core: the bare AEAD sealing and opening
//! packets in place, as fast as it can, for each backend; and OpenSSL's
//! own figure beside it (`openssl speed -evp`), when the tool is there.

use std::process::Command;
use std::time::{Duration, Instant};

use espgate_esp::aead::{GcmCipher, GcmKey};
use espgate_esp::{AeadAlgorithm, Backend};

/// Seals (or opens) `size`-byte packets in place for about `seconds`;
/// returns packets per second.
pub fn aead_pps(
    backend: Backend,
    alg: AeadAlgorithm,
    size: usize,
    open: bool,
    seconds: f64,
) -> f64 {
    let key_bytes: Vec<u8> = (0..alg.key_len() as u8).collect();
    let key = GcmKey::new(backend, alg, &key_bytes).expect("key length");
    let aad = [0u8; 12];
    let mut nonce = [0u8; 12];
    let mut data = vec![0x5au8; size];
    let mut tag = [0u8; 16];
    key.seal_in_place(&nonce, &aad, &mut data, &mut tag);
    let sealed = data.clone();
    let mut out = [0u8; 16];
    let budget = Duration::from_secs_f64(seconds);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < budget {
        for _ in 0..256 {
            if open {
                data.copy_from_slice(&sealed);
                let _ = std::hint::black_box(key.open_in_place(&nonce, &aad, &mut data, &tag));
            } else {
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                key.seal_in_place(&nonce, &aad, &mut data, &mut out);
                std::hint::black_box(&out);
            }
            n += 1;
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// `openssl speed -evp` for this size: packets per second, if it runs.
pub fn openssl_pps(alg: AeadAlgorithm, size: usize, seconds: u32) -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", alg.name(), "-bytes"])
        .arg(size.to_string())
        .arg("-seconds")
        .arg(seconds.max(1).to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "AES-128-GCM     225792.52k" (thousands of bytes/s).
    let figure = text.lines().last()?.split_whitespace().last()?;
    let kbytes: f64 = figure.trim_end_matches('k').parse().ok()?;
    Some(kbytes * 1000.0 / size as f64)
}
