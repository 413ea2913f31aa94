//! reader19: SA events (1b8d0a3, f2c5949) as the ESP core raises them.

mod common;

use common::*;
use espgate_esp::{AeadAlgorithm, Backend, Lifetime, OutboundSa, SaEvent, Sad};

const SPI: u32 = 0x4343;

/// Find 2, fixed. An inbound SA's hard lifetime was raised only at the first
/// packet refused after it (`LifetimeState::admit`), never when the
/// packet that reaches it is accepted. A far end with the same hard limit
/// (the usual case: both ends configured alike) sends exactly that many
/// packets and stops, so this SA, which now refuses everything, never
/// tells `hard_lifetime`: the worker polls after an accepted packet and
/// after a refusal at the hard limit, and neither comes. (The outbound
/// side the same: its last allowed packet raises nothing.)
#[test]
fn the_packet_that_reaches_the_hard_limit_tells_it() {
    let (mut o, mut i) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, false);
    let life = Lifetime {
        hard_packets: Some(5),
        ..Default::default()
    };
    o.lifetime = life;
    i.lifetime = life;
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    for _ in 0..5 {
        let mut b = buf(&inner_udp(false, &[0u8; 12]));
        out.encapsulate(&mut b).unwrap();
        sad.decapsulate(&mut b).unwrap();
    }
    // The far end's SA is spent too: it sends nothing more.
    let told_out: Vec<_> = std::iter::from_fn(|| out.poll_event()).collect();
    let sa = sad.get_mut(SPI).unwrap();
    let told_in: Vec<_> = std::iter::from_fn(|| sa.poll_event()).collect();
    assert_eq!(
        (told_out, told_in),
        (vec![SaEvent::HardLifetime], vec![SaEvent::HardLifetime]),
        "both SAs pass nothing more"
    );
}

/// Held: a takeover (`restart_at`) past the seq_low line and counts
/// resumed past the soft limit (`resume_counts`) raise their events with
/// the next packet, each once, and a refused packet after exhaustion adds
/// nothing (f2c5949).
#[test]
fn a_takeover_past_the_lines_tells_each_once_at_the_next_packet() {
    let (mut o, _) = pair(SPI, AeadAlgorithm::Aes128Gcm, false, false, false);
    o.lifetime = Lifetime {
        soft_packets: Some(10),
        ..Default::default()
    };
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let max = u64::from(u32::MAX);
    out.restart_at(max - 2);
    out.resume_counts(100, 0);
    let mut told = Vec::new();
    for _ in 0..50 {
        let _ = out.encapsulate(&mut buf(&inner_udp(false, b"a")));
        told.extend(std::iter::from_fn(|| out.poll_event()));
    }
    told.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        told,
        [
            SaEvent::SeqExhausted,
            SaEvent::SeqLow,
            SaEvent::SoftLifetime
        ]
    );
}
