//! Every kind of bad input is dropped under its own reason, counted, and
//! leaves the SA able to take the next good packet.

mod common;

use common::*;
use espgate_esp::{
    AeadAlgorithm, Backend, DropReason, Inbound, Lifetime, OutboundSa, SaConfig, SaEvent, Sad,
};
use espgate_wire::ip::protocol;
use espgate_wire::{HeapBuf, PacketBuf};

const SPI: u32 = 0x4242;

fn setup(udp: bool) -> (OutboundSa, Sad, SaConfig) {
    let (o, i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, udp);
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    (OutboundSa::new(&o, Backend::DEFAULT).unwrap(), sad, i)
}

fn reason(sad: &mut Sad, pkt: &[u8]) -> DropReason {
    let mut b = buf(pkt);
    sad.decapsulate(&mut b).expect_err("must be dropped").reason
}

/// The SA still decapsulates a fresh good packet after the bad one.
fn still_works(out: &mut OutboundSa, sad: &mut Sad) {
    let inner = inner_udp(false, b"still alive");
    let mut b = buf(&inner);
    out.encapsulate(&mut b).unwrap();
    assert!(matches!(
        sad.decapsulate(&mut b),
        Ok(Inbound::Decapsulated { .. })
    ));
    assert_eq!(b.data(), &inner[..]);
}

/// A plaintext: a 31-byte inner packet, `pad`, its length and `nh` (aligned
/// to 4 when `pad` has 3 bytes).
fn plaintext(nh: u8, pad: &[u8]) -> Vec<u8> {
    let mut p = inner_udp(false, b"xyz");
    p.extend(pad);
    p.push(pad.len() as u8);
    p.push(nh);
    p
}

#[test]
fn each_inbound_problem_has_its_own_reason() {
    let (mut out, mut sad, cfg) = setup(false);
    let good = {
        let mut b = buf(&inner_udp(false, b"hello"));
        out.encapsulate(&mut b).unwrap();
        b.data().to_vec()
    };
    let mut seq = 100u64;
    let mut next = || {
        seq += 1;
        seq
    };
    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = Vec::new();
    cases.push((
        "outer header cut",
        good[..12].to_vec(),
        DropReason::Truncated,
    ));
    cases.push((
        "esp header cut",
        ip_packet(
            cfg.tunnel.src,
            cfg.tunnel.dst,
            protocol::ESP,
            &[0, 0, 0x42, 0x42],
        ),
        DropReason::Truncated,
    ));
    cases.push(("empty packet", Vec::new(), DropReason::Malformed));
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0xff;
    cases.push(("ipv4 checksum", bad_sum, DropReason::Malformed));
    let mut frag = good.clone();
    frag[6] = 0x20;
    let mut p = espgate_wire::ipv4::Ipv4Packet::new_checked(&mut frag[..]).unwrap();
    p.fill_checksum();
    cases.push(("outer fragment", frag, DropReason::Fragment));
    cases.push((
        "tcp",
        ip_packet(cfg.tunnel.src, cfg.tunnel.dst, protocol::TCP, &[0; 20]),
        DropReason::NotEsp,
    ));
    let mut wrong_spi = good.clone();
    wrong_spi[20..24].copy_from_slice(&0x9999u32.to_be_bytes());
    cases.push(("wrong spi", wrong_spi, DropReason::UnknownSpi));
    let mut esp_only = vec![0, 0, 0x42, 0x42, 0, 0, 0, 9];
    cases.push((
        "zero-length",
        ip_packet(cfg.tunnel.src, cfg.tunnel.dst, protocol::ESP, &esp_only),
        DropReason::ZeroLength,
    ));
    esp_only.extend([0u8; 20]);
    cases.push((
        "payload shorter than iv+trailer+icv",
        ip_packet(cfg.tunnel.src, cfg.tunnel.dst, protocol::ESP, &esp_only),
        DropReason::Truncated,
    ));
    let mut unaligned = craft(&cfg, next(), &plaintext(4, &[1, 2, 3]));
    unaligned.push(0);
    unaligned[3] += 1;
    let mut p = espgate_wire::ipv4::Ipv4Packet::new_checked(&mut unaligned[..]).unwrap();
    p.fill_checksum();
    cases.push(("unaligned payload", unaligned, DropReason::BadLength));
    let mut bad_icv = craft(&cfg, next(), &plaintext(4, &[1, 2, 3]));
    let last = bad_icv.len() - 1;
    bad_icv[last] ^= 1;
    cases.push(("bad icv", bad_icv, DropReason::AuthFailed));
    let mut bad_ct = craft(&cfg, next(), &plaintext(4, &[1, 2, 3]));
    bad_ct[40] ^= 0x80;
    cases.push(("flipped ciphertext bit", bad_ct, DropReason::AuthFailed));
    cases.push((
        "bad padding bytes",
        craft(&cfg, next(), &plaintext(4, &[1, 7, 3])),
        DropReason::BadPadding,
    ));
    let mut overrun = inner_udp(false, b"x");
    overrun.extend([200, 4]);
    while overrun.len() % 4 != 0 {
        overrun.insert(0, 0);
    }
    cases.push((
        "pad length overruns",
        craft(&cfg, next(), &overrun),
        DropReason::BadPadding,
    ));
    cases.push((
        "next header udp",
        craft(&cfg, next(), &plaintext(protocol::UDP, &[1, 2, 3])),
        DropReason::BadNextHeader,
    ));
    cases.push((
        "dummy packet",
        craft(
            &cfg,
            next(),
            &plaintext(protocol::NO_NEXT_HEADER, &[1, 2, 3]),
        ),
        DropReason::Dummy,
    ));
    cases.push((
        "next header says v6, inner is v4",
        craft(&cfg, next(), &plaintext(protocol::IPV6, &[1, 2, 3])),
        DropReason::BadInner,
    ));
    let mut garbage = vec![0x45, 0, 0, 200];
    garbage.extend([0u8; 28]);
    garbage.extend([1, 2, 2, 4]);
    cases.push((
        "inner longer than payload",
        craft(&cfg, next(), &garbage),
        DropReason::BadInner,
    ));
    let (_, udp_cfg) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, true);
    let mut in_udp = craft(&udp_cfg, next(), &plaintext(4, &[1, 2, 3]));
    let esp = in_udp.split_off(20);
    let s = cfg.tunnel.src;
    let d = cfg.tunnel.dst;
    cases.push((
        "esp in udp to a port nobody listens on",
        ip_packet(s, d, protocol::UDP, &udp_datagram(&s, &d, 4500, 4500, &esp)),
        DropReason::NotEsp,
    ));

    for (what, pkt, want) in &cases {
        let before = sad.get(SPI).unwrap().counters().drops.get(*want) + sad.drops().get(*want);
        assert_eq!(reason(&mut sad, pkt), *want, "{what}");
        let after = sad.get(SPI).unwrap().counters().drops.get(*want) + sad.drops().get(*want);
        assert_eq!(after, before + 1, "{what}: counted once");
        still_works(&mut out, &mut sad);
    }
    let distinct: std::collections::BTreeSet<_> = cases.iter().map(|c| c.2).collect();
    assert_eq!(
        distinct.len(),
        12,
        "twelve distinct inbound reasons exercised"
    );
}

#[test]
fn failed_icv_does_not_move_the_window() {
    let (_, mut sad, cfg) = setup(false);
    let good = craft(&cfg, 5000, &plaintext(4, &[1, 2, 3]));
    let mut forged = good.clone();
    let n = forged.len() - 1;
    forged[n] ^= 1;
    assert_eq!(reason(&mut sad, &forged), DropReason::AuthFailed);
    assert_eq!(sad.get(SPI).unwrap().window().top(), 0);
    let mut b = buf(&good);
    assert!(sad.decapsulate(&mut b).is_ok());
    assert_eq!(reason(&mut sad, &good), DropReason::Replayed);
    assert_eq!(
        reason(
            &mut sad,
            &craft(&cfg, 5000 - 2000, &plaintext(4, &[1, 2, 3]))
        ),
        DropReason::TooOld
    );
}

#[test]
fn encapsulation_mismatch_both_ways() {
    let (_, mut sad_udp, cfg_udp) = setup(true);
    let (_, mut sad_plain, cfg_plain) = setup(false);
    // Plain ESP to a UDP SA.
    assert_eq!(
        reason(&mut sad_udp, &craft(&cfg_udp, 1, &plaintext(4, &[1, 2, 3]))),
        DropReason::EncapMismatch
    );
    // ESP in UDP to a plain SA: the plain SAD listens on no UDP port at all.
    let esp = craft(&cfg_plain, 1, &plaintext(4, &[1, 2, 3])).split_off(20);
    let (s, d) = (cfg_plain.tunnel.src, cfg_plain.tunnel.dst);
    let pkt = ip_packet(s, d, protocol::UDP, &udp_datagram(&s, &d, 4500, 4500, &esp));
    assert_eq!(reason(&mut sad_plain, &pkt), DropReason::NotEsp);
}

#[test]
fn outbound_problems() {
    let (mut out, _, _) = setup(false);
    let mut b = buf(&[0x45, 0, 0]);
    assert_eq!(
        out.encapsulate(&mut b).unwrap_err().reason,
        DropReason::BadInner
    );
    let mut b = buf(&[]);
    assert_eq!(
        out.encapsulate(&mut b).unwrap_err().reason,
        DropReason::BadInner
    );
    let mut b = buf(&[0x12; 40]);
    assert_eq!(
        out.encapsulate(&mut b).unwrap_err().reason,
        DropReason::BadInner
    );
    let inner = inner_udp(false, b"abc");
    let mut tight = HeapBuf::with_capacity(inner.len() + 200, 10);
    tight.append(inner.len()).unwrap().copy_from_slice(&inner);
    assert_eq!(
        out.encapsulate(&mut tight).unwrap_err().reason,
        DropReason::NoRoom
    );
    assert_eq!(
        tight.data(),
        &inner[..],
        "a refused packet is left as it was"
    );
    let big = inner_udp(false, &vec![0u8; 65_500]);
    let mut b = buf(&big);
    assert_eq!(
        out.encapsulate(&mut b).unwrap_err().reason,
        DropReason::Oversize
    );
    let c = out.counters();
    assert_eq!(
        (
            c.packets,
            c.drops.get(DropReason::BadInner),
            c.drops.get(DropReason::NoRoom),
            c.drops.get(DropReason::Oversize)
        ),
        (0, 3, 1, 1)
    );
    assert_eq!(
        out.seq(),
        0,
        "no sequence number is spent on a refused packet"
    );
    // Ethernet minimum-size padding after the inner packet is not encrypted.
    let mut padded = inner_udp(false, b"");
    let real_len = padded.len();
    padded.resize(46, 0);
    let (o2, i2) = pair(0x777, AeadAlgorithm::Aes128Gcm, false, false, false);
    let mut out2 = OutboundSa::new(&o2, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i2, Backend::DEFAULT).unwrap();
    let mut b = buf(&padded);
    out2.encapsulate(&mut b).unwrap();
    sad.decapsulate(&mut b).unwrap();
    assert_eq!(b.data(), &padded[..real_len]);
}

#[test]
fn sequence_numbers_never_wrap() {
    for (esn, start, usable) in [(false, u64::from(u32::MAX) - 2, 2), (true, u64::MAX - 1, 1)] {
        let (mut o, _) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, esn, false);
        o.initial_seq = start;
        let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
        for k in 0..usable {
            assert_eq!(
                out.encapsulate(&mut buf(&inner_udp(false, b"a"))).unwrap(),
                start + 1 + k
            );
        }
        for _ in 0..3 {
            assert_eq!(
                out.encapsulate(&mut buf(&inner_udp(false, b"a")))
                    .unwrap_err()
                    .reason,
                DropReason::SeqExhausted
            );
        }
        // So near the end, it ran low first; each told once.
        assert_eq!(out.poll_event(), Some(SaEvent::SeqLow));
        assert_eq!(out.poll_event(), Some(SaEvent::SeqExhausted));
        out.encapsulate(&mut buf(&inner_udp(false, b"a")))
            .unwrap_err();
        assert_eq!(out.poll_event(), None, "refused again, not told again");
        assert_eq!(out.seq(), start + usable);
    }
}

/// Less than a sixteenth of the sequence space left raises `SeqLow`,
/// once, at the first packet past the line (a takeover's start may land
/// past it: the event comes with the next packet).
#[test]
fn a_sequence_space_running_low_is_told_once() {
    for esn in [false, true] {
        let (mut o, _) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, esn, false);
        let max = if esn { u64::MAX } else { u64::from(u32::MAX) };
        let low = max - (max >> espgate_esp::SEQ_LOW_SHIFT);
        o.initial_seq = low - 2;
        let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
        out.encapsulate(&mut buf(&inner_udp(false, b"a"))).unwrap();
        assert_eq!(out.poll_event(), None, "{} left", out.seq_left());
        for _ in 0..3 {
            out.encapsulate(&mut buf(&inner_udp(false, b"a"))).unwrap();
        }
        assert_eq!(out.poll_event(), Some(SaEvent::SeqLow));
        assert_eq!(out.poll_event(), None, "told once");
        assert_eq!(out.seq_left(), max - (low + 2));
    }
}

#[test]
fn lifetimes_soft_event_then_hard_stop_both_directions() {
    let (mut o, mut i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, false);
    let life = Lifetime {
        soft_packets: Some(3),
        hard_packets: Some(5),
        ..Default::default()
    };
    o.lifetime = life;
    i.lifetime = Lifetime {
        soft_bytes: Some(100),
        hard_bytes: Some(150),
        ..Default::default()
    };
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    let mut sent = 0;
    let mut received = 0;
    for _ in 0..8 {
        let mut b = buf(&inner_udp(false, &[0u8; 12]));
        if out.encapsulate(&mut b).is_ok() {
            sent += 1;
            if sad.decapsulate(&mut b).is_ok() {
                received += 1;
            }
        }
    }
    // 40-byte inner packets: the 4th reaches 160 >= 150 bytes, the 5th is refused.
    assert_eq!((sent, received), (5, 4));
    assert_eq!(out.poll_event(), Some(SaEvent::SoftLifetime));
    assert_eq!(out.poll_event(), Some(SaEvent::HardLifetime));
    assert_eq!(out.counters().drops.get(DropReason::HardExpired), 3);
    let sa = sad.get_mut(SPI).unwrap();
    assert_eq!(sa.poll_event(), Some(SaEvent::SoftLifetime));
    assert_eq!(sa.poll_event(), Some(SaEvent::HardLifetime));
    assert_eq!(sa.counters().drops.get(DropReason::HardExpired), 1);
}

#[test]
fn sad_refuses_duplicates_and_outbound_definitions() {
    let (o, i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, false);
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    assert!(matches!(
        sad.insert(&i, Backend::DEFAULT),
        Err(espgate_esp::SadError::DuplicateSpi(SPI))
    ));
    assert!(matches!(
        sad.insert(&o, Backend::DEFAULT),
        Err(espgate_esp::SadError::NotInbound(SPI))
    ));
    assert_eq!(sad.len(), 1);
}

#[test]
fn a_removed_sa_is_unknown_and_the_others_still_decapsulate() {
    let mut sad = Sad::new();
    let mut outs = Vec::new();
    for spi in [0x500, 0x501, 0x502] {
        let (o, i) = pair(spi, AeadAlgorithm::Aes128Gcm, false, false, false);
        sad.insert(&i, Backend::DEFAULT).unwrap();
        outs.push(OutboundSa::new(&o, Backend::DEFAULT).unwrap());
    }
    // The first SA goes: the last one takes its slot in the SAD.
    let gone = sad.remove(0x500).expect("present");
    assert_eq!(gone.spi(), 0x500);
    assert!(sad.remove(0x500).is_none());
    assert_eq!(sad.len(), 2);
    let mut b = buf(&inner_udp(false, b"x"));
    outs[0].encapsulate(&mut b).unwrap();
    assert_eq!(reason(&mut sad, b.data()), DropReason::UnknownSpi);
    for out in &mut outs[1..] {
        still_works(out, &mut sad);
    }
    // Put back, it decapsulates again.
    sad.add(gone).unwrap();
    still_works(&mut outs[0], &mut sad);
    let (_, dup) = pair(0x501, AeadAlgorithm::Aes128Gcm, false, false, false);
    assert!(sad.insert(&dup, Backend::DEFAULT).is_err());
}
