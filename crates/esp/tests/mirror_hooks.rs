//! What the mirror needs from an SA: an outbound sequence limit (the lease)
//! with its own drop reason, a restart at a given sequence number, and the
//! replay window exported and restored in the mirror's layout.

mod common;

use common::*;
use espgate_esp::replay::ReplayWindow;
use espgate_esp::{AeadAlgorithm, Backend, DropReason, Inbound, OutboundSa, Sad};
use espgate_wire::PacketBuf;

#[test]
fn the_lease_limit_stalls_and_resumes() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    out.set_limit(5);
    let mut sent = Vec::new();
    for _ in 0..8 {
        let mut b = buf(&inner_udp(false, b"x"));
        match out.encapsulate(&mut b) {
            Ok(seq) => {
                sent.push(seq);
                assert!(matches!(
                    sad.decapsulate(&mut b),
                    Ok(Inbound::Decapsulated { .. })
                ));
            }
            Err(e) => assert_eq!(e.reason, DropReason::LeaseStall),
        }
    }
    assert_eq!(sent, vec![1, 2, 3, 4], "never the limit itself");
    assert_eq!(out.counters().drops.get(DropReason::LeaseStall), 4);
    out.set_limit(7);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        5
    );
}

#[test]
fn a_restart_moves_forward_only() {
    let (o, _) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    out.restart_at(1 << 32);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        1 << 32
    );
    out.restart_at(10);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        (1 << 32) + 1
    );
}

#[test]
fn a_restored_window_refuses_what_the_old_one_had_seen() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut first = Sad::new();
    first.insert(&i, Backend::DEFAULT).unwrap();
    let pkts: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            let mut b = buf(&inner_udp(false, b"x"));
            out.encapsulate(&mut b).unwrap();
            b.data().to_vec()
        })
        .collect();
    // The first node receives every other packet, then dies.
    for p in pkts.iter().step_by(2) {
        first.decapsulate(&mut buf(p)).unwrap();
    }
    let w = first.get(0x1000).unwrap().window();
    let (top, bits) = (w.top(), w.export());
    // The survivor restores the mirrored window.
    let mut second = Sad::new();
    second.insert(&i, Backend::DEFAULT).unwrap();
    second.get_mut(0x1000).unwrap().restore_window(top, &bits);
    for (k, p) in pkts.iter().enumerate() {
        let r = second.decapsulate(&mut buf(p));
        if k % 2 == 0 {
            assert_eq!(
                r.unwrap_err().reason,
                DropReason::Replayed,
                "packet {k} was seen before"
            );
        } else if (k as u64 + 1) < top {
            assert!(r.is_ok(), "packet {k} is fresh and inside the window");
        }
    }
    assert_eq!(ReplayWindow::restore(1024, top, &bits).export(), bits);
}
