//! A packet at its SA's limit held instead of dropped: an outbound SA says
//! so before anything is sealed; an inbound SA authenticates and decrypts
//! the packet, and the caller holds it until the limit rises and the SAD
//! admits it, checking the window then as if it arrived then.

mod common;

use common::*;
use espgate_esp::{AeadAlgorithm, Backend, DropReason, Inbound, Opened, OutboundSa, Sad};
use espgate_wire::{HeapBuf, PacketBuf};

fn sealed(out: &mut OutboundSa, n: usize) -> Vec<HeapBuf> {
    (0..n)
        .map(|k| {
            let mut b = buf(&inner_udp(false, &[k as u8; 8]));
            out.encapsulate(&mut b).unwrap();
            b
        })
        .collect()
}

#[test]
fn an_outbound_sa_at_its_limit_says_so_and_counts_a_stall_not_a_drop() {
    let (o, _) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    out.set_limit(3);
    assert!(!out.at_limit());
    sealed(&mut out, 2);
    assert!(out.at_limit());
    assert!(out.at_limit());
    assert_eq!(out.stalls(), 2);
    assert_eq!(out.counters().drops.get(DropReason::LeaseStall), 0);
    out.drop_at_limit();
    assert_eq!(out.counters().drops.get(DropReason::LeaseStall), 1);
    out.set_limit(4);
    assert!(!out.at_limit());
    assert_eq!(out.stalls(), 0, "a limit that moved starts a new stall");
}

#[test]
fn an_inbound_packet_held_at_the_limit_is_admitted_once_it_rises() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    sad.get_mut(0x1000).unwrap().set_limit(2);
    let mut pkts = sealed(&mut out, 3);
    let plain: Vec<u8> = inner_udp(false, &[1; 8]);
    assert!(matches!(
        sad.decapsulate_holding(&mut pkts[0]),
        Ok(Opened::Inbound(Inbound::Decapsulated { seq: 1, .. }))
    ));
    let Ok(Opened::AtLimit(held)) = sad.decapsulate_holding(&mut pkts[1]) else {
        panic!("seq 2 is at the limit");
    };
    assert_eq!((held.spi(), held.seq()), (0x1000, 2));
    let sa = sad.get(0x1000).unwrap();
    assert_eq!(sa.wanted(), 2);
    assert_eq!(sa.window().top(), 1, "not accepted yet");
    assert_eq!(sa.counters().drops.get(DropReason::LeaseStall), 0);
    // Still at the limit: it comes back as it was.
    let Ok(Opened::AtLimit(held)) = sad.admit(held, &mut pkts[1]) else {
        panic!("the limit has not moved");
    };
    sad.get_mut(0x1000).unwrap().set_limit(10);
    assert!(matches!(
        sad.admit(held, &mut pkts[1]),
        Ok(Opened::Inbound(Inbound::Decapsulated { seq: 2, .. }))
    ));
    assert_eq!(pkts[1].data(), &plain[..], "the inner packet, stripped");
    assert!(matches!(
        sad.decapsulate_holding(&mut pkts[2]),
        Ok(Opened::Inbound(Inbound::Decapsulated { seq: 3, .. }))
    ));
    let sa = sad.get(0x1000).unwrap();
    assert_eq!((sa.window().top(), sa.counters().packets), (3, 3));
}

#[test]
fn a_held_packet_whose_copy_was_accepted_meanwhile_is_a_replay() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    sad.get_mut(0x1000).unwrap().set_limit(1);
    let pkts = sealed(&mut out, 1);
    let (mut first, mut copy) = (pkts[0].clone(), pkts[0].clone());
    let Ok(Opened::AtLimit(held)) = sad.decapsulate_holding(&mut first) else {
        panic!("at the limit");
    };
    sad.get_mut(0x1000).unwrap().set_limit(10);
    assert!(matches!(
        sad.decapsulate_holding(&mut copy),
        Ok(Opened::Inbound(_))
    ));
    assert_eq!(
        sad.admit(held, &mut first).unwrap_err().reason,
        DropReason::Replayed
    );
    assert_eq!(
        sad.get(0x1000)
            .unwrap()
            .counters()
            .drops
            .get(DropReason::Replayed),
        1
    );
}

#[test]
fn a_held_packet_of_an_sa_gone_or_replaced_is_dropped_and_one_given_up_is_counted() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    sad.get_mut(0x1000).unwrap().set_limit(1);
    let mut pkts = sealed(&mut out, 2);
    let Ok(Opened::AtLimit(held)) = sad.decapsulate_holding(&mut pkts[0]) else {
        panic!("at the limit");
    };
    // The SA is removed and another takes its SPI: the held packet was
    // authenticated by the one gone.
    sad.remove(0x1000).unwrap();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    assert_eq!(
        sad.admit(held, &mut pkts[0]).unwrap_err().reason,
        DropReason::UnknownSpi
    );
    sad.get_mut(0x1000).unwrap().set_limit(1);
    let Ok(Opened::AtLimit(held)) = sad.decapsulate_holding(&mut pkts[1]) else {
        panic!("at the limit");
    };
    sad.drop_at_limit(held);
    assert_eq!(
        sad.get(0x1000)
            .unwrap()
            .counters()
            .drops
            .get(DropReason::LeaseStall),
        1
    );
}

#[test]
fn a_forged_packet_at_the_limit_is_refused_and_held_nowhere() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    sad.get_mut(0x1000).unwrap().set_limit(1);
    let mut forged = sealed(&mut out, 1).pop().unwrap();
    let n = forged.len();
    forged.data_mut()[n - 1] ^= 1;
    assert_eq!(
        sad.decapsulate_holding(&mut forged).unwrap_err().reason,
        DropReason::AuthFailed
    );
    assert_eq!(sad.get(0x1000).unwrap().wanted(), 0);
}

#[test]
fn a_token_is_admitted_by_the_sa_that_made_it_only() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let (mut one, mut other) = (Sad::new(), Sad::new());
    one.insert(&i, Backend::DEFAULT).unwrap();
    other.insert(&i, Backend::DEFAULT).unwrap();
    one.get_mut(0x1000).unwrap().set_limit(1);
    let mut pkt = sealed(&mut out, 1).pop().unwrap();
    let Ok(Opened::AtLimit(held)) = one.decapsulate_holding(&mut pkt) else {
        panic!("at the limit");
    };
    assert_eq!(
        other.admit(held, &mut pkt).unwrap_err().reason,
        DropReason::UnknownSpi
    );
}

#[test]
fn an_outbound_sa_past_its_hard_lifetime_is_not_at_its_limit_but_expired() {
    let (mut o, _) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    o.lifetime.hard_packets = Some(2);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    sealed(&mut out, 2);
    out.set_limit(3);
    assert!(!out.at_limit(), "sealing drops it for its lifetime first");
    let mut b = buf(&inner_udp(false, b"x"));
    assert_eq!(
        out.encapsulate(&mut b).unwrap_err().reason,
        DropReason::HardExpired
    );
}
