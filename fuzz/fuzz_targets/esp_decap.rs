//! Inbound decapsulation with a live SA, its replay window and ESN
//! inference.
//!
//! First byte 0: the rest is an outer packet, decapsulated as it is (every
//! parser and check before the ICV). Otherwise the next byte says how many
//! packets (1 to 8) a matching outbound SA seals, at sequence numbers the
//! fuzzer chooses (each a signed 32-bit step from the one before, starting
//! just below the 32-bit wrap, so the window and ESN inference are reached
//! from both sides); the rest is their inner packet. The first byte picks
//! whether and where to flip a bit of the last one before decapsulation.
//! Every packet is decapsulated in order: one accepted must come back with
//! the sequence number it was sealed at, never twice; an untouched one
//! above everything accepted (within ESN inference's reach) must be
//! accepted; a touched one never is. The count byte's high bits may set
//! the SA's limit near the start: an authentic packet at or past it is
//! held (decrypted, not accepted), and once every packet has been seen
//! the limit is lifted and the held ones are admitted in order, with the
//! same checks. Then every packet sealed is sent again untouched: none
//! accepted before may pass (one refused before, beyond ESN inference's
//! reach then, may).
#![no_main]

use std::collections::BTreeSet;

use espgate_esp::{
    AeadAlgorithm, Backend, Direction, Inbound, Opened, OutboundSa, SaConfig, Sad, Tunnel,
};
use espgate_wire::{HeapBuf, PacketBuf};
use libfuzzer_sys::fuzz_target;

const START: u64 = (1 << 32) - 3;

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
    out.initial_seq = START;
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
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let n = 1 + usize::from(count % 8);
    let limit = u64::from(count >> 3);
    if limit != 0 {
        sad.get_mut(0x1000).unwrap().set_limit(START - 16 + limit);
    }
    if rest.len() < 4 * n {
        return;
    }
    let (steps, inner) = rest.split_at(4 * n);
    let mut seq = START;
    let mut sealed = Vec::new();
    for step in steps.chunks(4) {
        let step = i32::from_be_bytes(step.try_into().unwrap());
        seq = seq.saturating_add_signed(i64::from(step)).max(1);
        let mut cfg = o.clone();
        cfg.initial_seq = seq - 1;
        let mut out = OutboundSa::new(&cfg, Backend::DEFAULT).unwrap();
        let mut b = HeapBuf::from_packet(inner);
        let Ok(used) = out.encapsulate(&mut b) else {
            return;
        };
        sealed.push((used, b.data().to_vec()));
    }
    let flip = usize::from(mode - 1) * 7;
    let mut accepted = BTreeSet::new();
    let mut held = Vec::new();
    let mut top = i.initial_seq;
    for (k, (used, bytes)) in sealed.iter().enumerate() {
        let mut b = HeapBuf::from_packet(bytes);
        let tampered = k + 1 == sealed.len() && mode != 1 && flip < bytes.len();
        if tampered {
            b.data_mut()[flip] ^= 0x10;
        }
        let fresh = *used > top && *used - top < 1 << 30 && !accepted.contains(used);
        match sad.decapsulate_holding(&mut b) {
            Ok(Opened::Inbound(Inbound::Decapsulated { seq, .. })) => {
                // The outer IPv4 header (20 bytes) is not authenticated.
                assert!(!tampered || flip < 20, "a tampered ESP packet was accepted");
                assert_eq!(seq, *used, "accepted at another sequence number than sealed");
                assert!(accepted.insert(seq), "sequence number {seq} accepted twice");
                top = top.max(seq);
            }
            Ok(Opened::AtLimit(h)) => {
                assert!(!tampered || flip < 20, "a tampered ESP packet was held");
                assert_eq!(h.seq(), *used, "held at another sequence number than sealed");
                held.push((h, b, *used));
            }
            Ok(other) => panic!("sealed packet seen as {other:?}"),
            Err(_) => assert!(
                tampered || !fresh,
                "an untouched packet at {used} above everything accepted ({top}) was refused"
            ),
        }
    }
    sad.get_mut(0x1000).unwrap().set_limit(u64::MAX);
    for (h, mut b, used) in held {
        match sad.admit(h, &mut b) {
            Ok(Opened::Inbound(Inbound::Decapsulated { seq, .. })) => {
                assert_eq!(seq, used, "admitted at another sequence number than sealed");
                assert!(accepted.insert(seq), "sequence number {seq} admitted twice");
            }
            Ok(other) => panic!("a held packet admitted as {other:?}"),
            Err(_) => {}
        }
    }
    for (used, bytes) in &sealed {
        let mut again = HeapBuf::from_packet(bytes);
        if let Ok(Inbound::Decapsulated { seq, .. }) = sad.decapsulate(&mut again) {
            // One refused the first time (beyond ESN inference's reach
            // then) may pass now; one accepted never passes again.
            assert_eq!(seq, *used, "accepted at another sequence number than sealed");
            assert!(accepted.insert(seq), "the packet sealed at {used} was accepted again");
        }
    }
});
