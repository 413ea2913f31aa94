//! Known-answer tests: the AES-GCM-ESP cases of draft-mcgrew-gcm-test-01
//! section 4 (tests/vectors/), through every compiled backend, both ways.

use espgate_esp::AeadAlgorithm;
use espgate_esp::aead::Backend;
use espgate_esp::cipher::EspCipher;

/// The backends under test. Here, built as espgate-esp's own test, those
/// compiled into it (ring, RustCrypto); espgate-io's tests/esp_backends.rs
/// builds this file again as a module, where `crate::backends` is its own
/// and adds intel-ipsec-mb, which espgate-esp cannot link.
#[allow(dead_code)]
fn backends() -> Vec<Backend> {
    Backend::compiled().to_vec()
}

struct Case {
    key: Vec<u8>,
    spi: Vec<u8>,
    seq: Vec<u8>,
    nonce: Vec<u8>,
    plaintext: Vec<u8>,
    aad: Vec<u8>,
    ctext_tag: Vec<u8>,
    packet: Vec<u8>,
}

/// Reads the draft's layout: `name = hex`, hex continuation lines, and
/// `(N octets)` lines, which are checked against what was read.
fn load() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/draft-mcgrew-gcm-test-01.txt"
    );
    let text = std::fs::read_to_string(path).expect("vector file");
    let mut cases = Vec::new();
    for block in text.split("algorithm = ").skip(1) {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for line in block.lines().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(n) = line
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(" octets)"))
            {
                let (name, v) = fields.last().expect("a field before its length");
                assert_eq!(v.len(), n.parse::<usize>().unwrap(), "length of {name}");
            } else if let Some((name, hex)) = line.split_once(" = ") {
                fields.push((
                    name.trim().to_string(),
                    hex::decode(hex.trim()).expect("hex"),
                ));
            } else {
                fields
                    .last_mut()
                    .expect("continuation")
                    .1
                    .extend(hex::decode(line).expect("hex"));
            }
        }
        let get = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .unwrap_or_else(|| panic!("field {n}"))
                .1
                .clone()
        };
        cases.push(Case {
            key: get("key"),
            spi: get("spi"),
            seq: get("seq"),
            nonce: get("nonce"),
            plaintext: get("plaintext"),
            aad: get("aad"),
            ctext_tag: get("ctext+tag"),
            packet: get("packet"),
        });
    }
    cases
}

#[test]
fn draft_mcgrew_gcm_test_01_every_backend() {
    let cases = load();
    assert_eq!(cases.len(), 15, "every AES-128/256 GCM case of the draft");
    let mut seen_esn_max = false;
    let mut seen_seq32_max = false;
    for (i, c) in cases.iter().enumerate() {
        let algorithm = match c.key.len() {
            16 => AeadAlgorithm::Aes128Gcm,
            32 => AeadAlgorithm::Aes256Gcm,
            n => panic!("case {i}: key of {n} bytes"),
        };
        let esn = c.seq.len() == 8;
        let spi = u32::from_be_bytes(c.spi[..].try_into().unwrap());
        let seq = if esn {
            u64::from_be_bytes(c.seq[..].try_into().unwrap())
        } else {
            u64::from(u32::from_be_bytes(c.seq[..].try_into().unwrap()))
        };
        seen_esn_max |= esn && seq == u64::MAX;
        seen_seq32_max |= !esn && seq == u64::from(u32::MAX);
        // The AAD is SPI || sequence number (64 bits with ESN): RFC 4106 5.
        let mut aad = c.spi.clone();
        aad.extend(&c.seq);
        assert_eq!(aad, c.aad, "case {i}: aad");
        let mut key_and_salt = c.key.clone();
        key_and_salt.extend(&c.nonce[..4]);
        let iv: [u8; 8] = c.nonce[4..].try_into().unwrap();
        let (ctext, tag) = c.ctext_tag.split_at(c.ctext_tag.len() - 16);

        for backend in crate::backends() {
            let cipher = EspCipher::new(backend, algorithm, &key_and_salt, esn).unwrap();
            let mut buf = c.plaintext.clone();
            let mut icv = [0u8; 16];
            cipher.seal(spi, seq, &iv, &mut buf, &mut icv);
            assert_eq!(buf, ctext, "case {i} {backend}: ciphertext");
            assert_eq!(&icv[..], tag, "case {i} {backend}: ICV");

            let mut packet = c.spi.clone();
            packet.extend(&(seq as u32).to_be_bytes());
            packet.extend(&iv);
            packet.extend(&buf);
            packet.extend(&icv);
            assert_eq!(packet, c.packet, "case {i} {backend}: packet");

            let mut body = c.packet[16..c.packet.len() - 16].to_vec();
            let icv: [u8; 16] = c.packet[c.packet.len() - 16..].try_into().unwrap();
            cipher.open(spi, seq, &iv, &mut body, &icv).unwrap();
            assert_eq!(body, c.plaintext, "case {i} {backend}: decrypt");

            let mut body = ctext.to_vec();
            assert!(
                cipher
                    .open(spi, seq ^ (1 << 40) ^ 1, &iv, &mut body, &icv)
                    .is_err(),
                "case {i}: wrong seq must fail"
            );
        }
    }
    assert!(
        seen_esn_max && seen_seq32_max,
        "the ESN 2^64-1 and 32-bit 2^32-1 cases are present"
    );
}

/// Whole tunnel-mode packets from DPDK's librte_security tests
/// (tests/vectors/dpdk-ipsec-tunnel-gcm.txt): the SAD decapsulates each
/// outer packet to the exact inner packet, on every backend.
#[test]
fn dpdk_tunnel_mode_packets_decrypt() {
    use espgate_esp::{Direction, Inbound, SaConfig, Sad, Tunnel};
    use espgate_wire::{HeapBuf, PacketBuf};

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/dpdk-ipsec-tunnel-gcm.txt"
    );
    let text = std::fs::read_to_string(path).expect("vector file");
    let mut checked = 0;
    for block in text.split("name = ").skip(1) {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for line in block
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match line.split_once(" = ") {
                Some((k, v)) => fields.push((k.to_string(), hex::decode(v).expect("hex"))),
                None => fields
                    .last_mut()
                    .expect("continuation")
                    .1
                    .extend(hex::decode(line).expect("hex")),
            }
        }
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).expect(n).1.clone();
        let key = get("key");
        let algorithm = if key.len() == 16 {
            AeadAlgorithm::Aes128Gcm
        } else {
            AeadAlgorithm::Aes256Gcm
        };
        let mut key_and_salt = key;
        key_and_salt.extend(get("salt"));
        let spi = u32::from_be_bytes(get("spi")[..].try_into().unwrap());
        let seq = u64::from(u32::from_be_bytes(get("seq")[..].try_into().unwrap()));
        let tunnel = Tunnel {
            src: "192.168.1.2".parse().unwrap(),
            dst: "192.168.1.1".parse().unwrap(),
        };
        let cfg = SaConfig::new(spi, Direction::Inbound, tunnel, algorithm, key_and_salt);
        for backend in crate::backends() {
            let mut sad = Sad::new();
            sad.insert(&cfg, backend).unwrap();
            let mut b = HeapBuf::from_packet(&get("outer"));
            let v = sad
                .decapsulate(&mut b)
                .unwrap_or_else(|e| panic!("{}: {e}", block.lines().next().unwrap()));
            assert_eq!(
                v,
                Inbound::Decapsulated {
                    spi,
                    seq,
                    next_header: 4
                }
            );
            assert_eq!(b.data(), &get("inner")[..]);
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * crate::backends().len());
}
