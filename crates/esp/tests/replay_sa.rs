//! Anti-replay through the whole inbound path with real crypto: random
//! arrival orders (duplicates, reordering within and beyond the window, the
//! ESN wrap of the low 32 bits) against a set-based model. A replayed packet
//! is always refused; a fresh packet inside the window always accepted.
//! Also: arbitrary bytes never panic the SAD and never change an SA.

mod common;

use std::collections::BTreeSet;

use common::*;
use espgate_esp::{AeadAlgorithm, Backend, DropReason, Inbound, OutboundSa, Sad};
use espgate_wire::PacketBuf;
use proptest::prelude::*;

const SPI: u32 = 0x3000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arrival_orders_against_model(
        esn in any::<bool>(),
        near_wrap in any::<bool>(),
        window in prop_oneof![Just(32u32), Just(64), Just(100)],
        order in proptest::collection::vec(0usize..200, 1..300),
    ) {
        let (mut o, mut i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, esn, false);
        let start = match (esn, near_wrap) {
            (true, true) => (5u64 << 32) - 80,
            (false, true) => u64::from(u32::MAX) - 200,
            _ => 0,
        };
        o.initial_seq = start;
        i.initial_seq = start;
        i.replay_window = window;
        let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
        let mut sad = Sad::new();
        sad.insert(&i, Backend::DEFAULT).unwrap();
        // Every packet the sender will ever send, sealed once.
        let sealed: Vec<(u64, Vec<u8>)> = (0..200)
            .map(|k| {
                let mut b = buf(&inner_udp(k % 3 == 0, &[k as u8; 9]));
                let seq = out.encapsulate(&mut b).unwrap();
                (seq, b.data().to_vec())
            })
            .collect();
        let mut seen = BTreeSet::new();
        let mut top = start;
        for idx in order {
            let (seq, pkt) = &sealed[idx];
            let fresh = !seen.contains(seq) && (*seq > top || top - seq < u64::from(window));
            let mut b = buf(pkt);
            let got = sad.decapsulate(&mut b);
            if fresh {
                prop_assert!(matches!(got, Ok(Inbound::Decapsulated { seq: s, .. }) if s == *seq), "fresh {seq} refused: {got:?}");
                seen.insert(*seq);
                top = top.max(*seq);
            } else {
                let r = got.expect_err("a replay or too-old packet was accepted").reason;
                prop_assert!(r == DropReason::Replayed || r == DropReason::TooOld || r == DropReason::AuthFailed, "{r}");
            }
        }
        prop_assert_eq!(sad.get(SPI).unwrap().window().top(), top);
        prop_assert_eq!(sad.get(SPI).unwrap().counters().packets, seen.len() as u64);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_change_the_sa(data in proptest::collection::vec(any::<u8>(), 0..200), v6 in any::<bool>()) {
        let (o, i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, true, true);
        let mut sad = Sad::new();
        sad.insert(&i, Backend::DEFAULT).unwrap();
        let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
        // Give the bytes a plausible outer header so they reach the SA.
        let mut esp = 0x3000u32.to_be_bytes().to_vec();
        esp.extend(&data);
        let (s, d) = if v6 { (V6_PEER.parse().unwrap(), V6_LOCAL.parse().unwrap()) } else { (i.tunnel.src, i.tunnel.dst) };
        for pkt in [data.clone(), ip_packet(s, d, espgate_wire::ip::protocol::ESP, &esp), ip_packet(s, d, espgate_wire::ip::protocol::UDP, &udp_datagram(&s, &d, 4500, 4500, &esp))] {
            let mut b = buf(&pkt);
            let before = sad.get(SPI).unwrap().window().clone();
            if let Ok(Inbound::Decapsulated { .. }) = sad.decapsulate(&mut b) {
                prop_assert!(false, "random bytes authenticated");
            }
            prop_assert_eq!(sad.get(SPI).unwrap().window(), &before);
        }
        // And the SA still works.
        let inner = inner_udp(false, b"ok");
        let mut b = buf(&inner);
        out.encapsulate(&mut b).unwrap();
        prop_assert!(sad.decapsulate(&mut b).is_ok());
        prop_assert_eq!(b.data(), &inner[..]);
    }
}
