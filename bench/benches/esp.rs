//! ESP encrypt and decrypt per packet beside the bare AEAD of the same size,
//! for each backend, AES-128 and AES-256: the ESP overhead over raw crypto
//! is the ratio of the two throughputs in one run.
//!
//! `cargo bench -p espgate-bench` (add `-- --quick` for a short run).
//! The ESP and AEAD-open figures include copying the packet into the buffer
//! each time (a memcpy of the packet); the AEAD seal works on one buffer.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use espgate_bench::{SIZES, inner_packet, sa_pair};
use espgate_esp::aead::{GcmCipher, GcmKey};
use espgate_esp::{AeadAlgorithm, Backend, OutboundSa, Sad};
use espgate_wire::{HeapBuf, PacketBuf};

fn benches(c: &mut Criterion) {
    for &backend in Backend::compiled() {
        for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
            let mut g = c.benchmark_group(format!("{backend}/{alg}"));
            for size in SIZES {
                g.throughput(Throughput::Bytes(size as u64));
                let (o, i) = sa_pair(alg);
                let inner = inner_packet(size);

                // The bare AEAD: seal `size` bytes in place with a 12-byte AAD.
                let key = GcmKey::new(backend, alg, &o.key[..alg.key_len()]).expect("key");
                let mut data = inner.clone();
                let mut nonce = [0u8; 12];
                let mut counter = 0u64;
                let mut tag = [0u8; 16];
                g.bench_with_input(BenchmarkId::new("aead-seal", size), &size, |b, _| {
                    b.iter(|| {
                        counter += 1;
                        nonce[4..].copy_from_slice(&counter.to_be_bytes());
                        key.seal_in_place(&nonce, &[0u8; 12], &mut data, &mut tag)
                    })
                });
                key.seal_in_place(&nonce, &[0u8; 12], &mut data, &mut tag);
                let sealed = data.clone();
                g.bench_with_input(BenchmarkId::new("aead-open", size), &size, |b, _| {
                    b.iter(|| {
                        data.copy_from_slice(&sealed);
                        key.open_in_place(&nonce, &[0u8; 12], &mut data, &tag)
                            .expect("authentic")
                    })
                });

                // ESP: the whole tunnel-mode encapsulation in place.
                let mut out = OutboundSa::new(&o, backend).expect("sa");
                let mut buf = HeapBuf::from_packet(&inner);
                g.bench_with_input(BenchmarkId::new("esp-encrypt", size), &size, |b, _| {
                    b.iter(|| {
                        buf.reset(HeapBuf::DEFAULT_HEADROOM, &inner).expect("fits");
                        out.encapsulate(&mut buf).expect("encrypt")
                    })
                });

                // ESP decrypt: a stream of fresh packets (each sequence number
                // once), decapsulated in place.
                let mut sad = Sad::new();
                sad.insert(&i, backend).expect("sa");
                let stream: Vec<Vec<u8>> = (0..4096)
                    .map(|_| {
                        let mut b = HeapBuf::from_packet(&inner);
                        out.encapsulate(&mut b).expect("encrypt");
                        b.data().to_vec()
                    })
                    .collect();
                let mut k = 0;
                let mut buf = HeapBuf::with_capacity(
                    HeapBuf::DEFAULT_HEADROOM + size + 256,
                    HeapBuf::DEFAULT_HEADROOM,
                );
                g.bench_with_input(BenchmarkId::new("esp-decrypt", size), &size, |b, _| {
                    b.iter(|| {
                        if k == stream.len() {
                            // Start a new SA so the numbers are fresh again.
                            sad = Sad::new();
                            sad.insert(&i, backend).expect("sa");
                            k = 0;
                        }
                        buf.reset(HeapBuf::DEFAULT_HEADROOM, &stream[k])
                            .expect("fits");
                        k += 1;
                        sad.decapsulate(&mut buf).expect("decrypt")
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group!(esp, benches);
criterion_main!(esp);
