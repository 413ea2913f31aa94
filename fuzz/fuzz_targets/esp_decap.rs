//! Inbound decapsulation with a live SA and replay window.
//!
//! First byte 0: the rest is an outer packet, decapsulated as it is (every
//! parser and check before the ICV). Otherwise the rest is an inner packet
//! that a matching outbound SA seals; the first byte picks whether and where
//! to flip a bit before decapsulation. An untouched packet must come back
//! exactly and then be refused as a replay; a touched one must never be
//! accepted.
#![no_main]

use espgate_esp::{AeadAlgorithm, Backend, Direction, Inbound, OutboundSa, SaConfig, Sad, Tunnel};
use espgate_wire::{HeapBuf, PacketBuf};
use libfuzzer_sys::fuzz_target;

fn pair() -> (SaConfig, SaConfig) {
    let tunnel = Tunnel {
        src: "172.16.1.5".parse().unwrap(),
        dst: "172.16.2.5".parse().unwrap(),
    };
    let mut out = SaConfig::new(
        0x1000,
        Direction::Outbound,
        tunnel,
        AeadAlgorithm::Aes128Gcm,
        vec![7; 20],
    );
    out.esn = true;
    out.initial_seq = (1 << 32) - 3;
    let mut inb = out.clone();
    inb.direction = Direction::Inbound;
    inb.replay_window = 64;
    (out, inb)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (o, i) = pair();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    if mode == 0 {
        let mut b = HeapBuf::from_packet(rest);
        let _ = sad.decapsulate(&mut b);
        return;
    }
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut b = HeapBuf::from_packet(rest);
    if out.encapsulate(&mut b).is_err() {
        return;
    }
    let sealed = b.data().to_vec();
    let flip = usize::from(mode - 1) * 7;
    let tampered = mode != 1 && flip < sealed.len();
    if tampered {
        b.data_mut()[flip] ^= 0x10;
    }
    match sad.decapsulate(&mut b) {
        Ok(Inbound::Decapsulated { .. }) => {
            assert!(!tampered || flip < 20, "a tampered ESP packet was accepted");
            let mut again = HeapBuf::from_packet(&sealed);
            assert!(
                sad.decapsulate(&mut again).is_err(),
                "a replay was accepted"
            );
        }
        Ok(other) => panic!("sealed packet seen as {other:?}"),
        Err(_) => assert!(tampered, "an untouched packet was refused"),
    }
});
