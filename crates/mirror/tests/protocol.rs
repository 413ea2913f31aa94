//! Deterministic tests of the mirror protocol between two nodes: leases
//! and their acknowledgements, stalls and resumption, loss, duplication and
//! reordering of every frame, forged and replayed frames, coalescing, and
//! peer liveness. Time is explicit; the link is a scripted or seeded one.

use espgate_mirror::{Mirror, MirrorConfig, MirrorEvent, MirrorKey, Reject};
use espgate_wire::mirror::SaDir;
use proptest::prelude::*;

const SPI: u32 = 0x1000;

fn key() -> MirrorKey {
    MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap()
}

fn cfg(node: u32, peer: u32) -> MirrorConfig {
    MirrorConfig {
        node,
        peer,
        interval: 100,
        quantity: 400,
        lease: true,
        takeover_jump: 1 << 32,
        inbound_interval: 100,
        heartbeat_ms: 10,
        dead_after: 3,
        refresh_ms: 50,
        max_frame: 1400,
    }
}

fn pair() -> (Mirror, Mirror) {
    (
        Mirror::new(cfg(1, 2), key(), 1000, 0),
        Mirror::new(cfg(2, 1), key(), 2000, 0),
    )
}

/// Delivers everything each side has to send, both ways, until quiet.
fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) {
    for _ in 0..10 {
        let mut any = false;
        while let Some(f) = a.poll_transmit(now) {
            b.handle_frame(now, &f).unwrap();
            any = true;
        }
        while let Some(f) = b.poll_transmit(now) {
            a.handle_frame(now, &f).unwrap();
            any = true;
        }
        if !any {
            return;
        }
    }
}

fn events(m: &mut Mirror) -> Vec<MirrorEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn the_lease_is_stored_then_acknowledged_then_usable() {
    let (mut a, mut b) = pair();
    a.own_outbound(SPI, false, 0);
    assert_eq!(
        a.limit(SPI),
        Some(0),
        "nothing may be sent before the peer holds a lease"
    );
    let f = a.poll_transmit(0).unwrap();
    b.handle_frame(0, &f).unwrap();
    assert_eq!(b.standby().get(SPI, SaDir::Outbound).unwrap().value, 400);
    assert_eq!(a.limit(SPI), Some(0), "stored is not yet acknowledged");
    let ack = b.poll_transmit(0).unwrap();
    a.handle_frame(0, &ack).unwrap();
    assert_eq!(a.limit(SPI), Some(400));
    assert!(events(&mut a).contains(&MirrorEvent::LimitRaised {
        spi: SPI,
        limit: 400
    }));
}

#[test]
fn stall_while_acks_are_lost_then_resume() {
    let (mut a, mut b) = pair();
    a.own_outbound(SPI, false, 0);
    exchange(&mut a, &mut b, 0);
    assert_eq!(a.limit(SPI), Some(400));
    // The worker runs up to its limit; acknowledgements stop coming.
    a.outbound_progress(SPI, 399, 39_900, 399);
    for t in 1..20 {
        while let Some(f) = a.poll_transmit(t) {
            b.handle_frame(t, &f).unwrap();
        }
        while b.poll_transmit(t).is_some() {}
    }
    assert_eq!(a.limit(SPI), Some(400), "stalled at the acknowledged lease");
    assert!(b.standby().get(SPI, SaDir::Outbound).unwrap().value >= 799);
    // The link heals: a refresh or the next state brings an ack.
    a.outbound_progress(SPI, 399, 39_900, 399);
    exchange(&mut a, &mut b, 100);
    assert_eq!(a.limit(SPI), Some(799));
}

#[test]
fn a_burst_over_several_multiples_sends_one_state() {
    let (mut a, mut b) = pair();
    a.own_outbound(SPI, false, 0);
    exchange(&mut a, &mut b, 0);
    let before = a.stats().states_sent;
    a.outbound_progress(SPI, 350, 0, 350);
    exchange(&mut a, &mut b, 1);
    assert_eq!(a.stats().states_sent, before + 1);
    assert_eq!(b.standby().get(SPI, SaDir::Outbound).unwrap().value, 750);
}

#[test]
fn forged_replayed_and_stale_frames_change_nothing() {
    let (mut a, mut b) = pair();
    a.own_outbound(SPI, false, 0);
    let f1 = a.poll_transmit(0).unwrap();
    b.handle_frame(0, &f1).unwrap();
    a.outbound_progress(SPI, 250, 0, 250);
    let f2 = a.poll_transmit(1).unwrap();
    let stored = b.standby().clone();
    let mut forged = f2.clone();
    let n = forged.len();
    forged[n / 2] ^= 0x40;
    assert_eq!(b.handle_frame(1, &forged), Err(Reject::Forged));
    assert_eq!(b.handle_frame(1, &f1), Err(Reject::Replayed));
    let old_epoch = Mirror::new(cfg(1, 2), key(), 999, 0)
        .poll_transmit(0)
        .unwrap();
    assert_eq!(b.handle_frame(1, &old_epoch), Err(Reject::Stale));
    assert_eq!(b.standby(), &stored, "no refused frame touched the table");
    b.handle_frame(1, &f2).unwrap();
    assert_eq!(b.standby().get(SPI, SaDir::Outbound).unwrap().value, 650);
    assert_eq!(b.rejected().total(), 3);
}

#[test]
fn a_dead_link_never_grows_the_queue() {
    let (mut a, _) = pair();
    for spi in 0..100 {
        a.own_outbound(0x1000 + spi, true, 0);
    }
    for round in 1..=100u64 {
        for spi in 0..100 {
            a.outbound_progress(0x1000 + spi, round * 1000, 0, round * 1000);
        }
        assert!(a.queued() <= 100, "at most one waiting state per SA");
    }
}

#[test]
fn silence_means_death_and_frames_mean_life() {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    assert!(a.peer_alive());
    assert!(matches!(
        events(&mut a).as_slice(),
        [MirrorEvent::PeerAlive { epoch: 2000 }]
    ));
    a.handle_timeout(30);
    assert!(
        a.peer_alive(),
        "three heartbeats of 10 ms are not yet missed at 30 ms"
    );
    a.handle_timeout(31);
    assert!(!a.peer_alive());
    assert_eq!(events(&mut a), vec![MirrorEvent::PeerDead]);
    let hb = b.poll_transmit(40).unwrap();
    a.handle_frame(40, &hb).unwrap();
    assert!(a.peer_alive());
    // The heartbeat timer drives poll_timeout.
    assert!(a.poll_timeout() <= 40 + 31);
}

#[test]
fn esn_sas_may_run_past_the_lease_by_the_takeover_jump_less_quantity() {
    let (mut a, mut b) = pair();
    a.own_outbound(SPI, true, 5);
    exchange(&mut a, &mut b, 0);
    assert_eq!(a.limit(SPI), Some(405 + (1 << 32) - 400));
}

#[test]
fn inbound_windows_reach_the_standby_table() {
    let (mut a, mut b) = pair();
    a.own_inbound(0x2000, 0);
    a.inbound_progress(0x2000, 150, &[0b101, 0], 1500, 149);
    exchange(&mut a, &mut b, 0);
    let s = b.standby().get(0x2000, SaDir::Inbound).unwrap();
    assert_eq!((s.value, s.bitmap[0], s.packets), (150, 0b101, 149));
}

/// What the link does with one frame.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![6 => Just(Fate::Deliver), 2 => Just(Fate::Drop), 1 => Just(Fate::Duplicate), 1 => Just(Fate::Delay)]
}

/// Moves what `from` has to send to `to` as `fate` says; delayed frames
/// arrive later, after newer ones, when `release`.
fn carry(
    from: &mut Mirror,
    to: &mut Mirror,
    fate: Fate,
    held: &mut Vec<Vec<u8>>,
    now: u64,
    release: bool,
) {
    while let Some(f) = from.poll_transmit(now) {
        match fate {
            Fate::Deliver => {
                let _ = to.handle_frame(now, &f);
            }
            Fate::Drop => {}
            Fate::Duplicate => {
                let _ = to.handle_frame(now, &f);
                let _ = to.handle_frame(now, &f);
            }
            Fate::Delay => held.push(f),
        }
    }
    if release {
        for f in held.drain(..) {
            let _ = to.handle_frame(now, &f);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the link does to frames both ways, the owner's limit never
    /// passes the lease the peer has stored: a takeover from the stored
    /// lease can never reuse a sequence number. With a clean link at the
    /// end, the SA makes progress again.
    #[test]
    fn the_limit_never_passes_the_stored_lease(
        fates in proptest::collection::vec((fate(), fate()), 50..300),
        bursts in proptest::collection::vec(1u64..250, 50..300),
    ) {
        let (mut a, mut b) = pair();
        a.own_outbound(SPI, false, 0);
        let mut seq = 0u64;
        let mut held_ab: Vec<Vec<u8>> = Vec::new();
        let mut held_ba: Vec<Vec<u8>> = Vec::new();
        for (t, ((fab, fba), burst)) in fates.iter().zip(bursts.iter().cycle()).enumerate() {
            let now = t as u64;
            // The worker sends up to, never at or past, the limit.
            let limit = a.limit(SPI).unwrap();
            seq = (seq + burst).min(limit.saturating_sub(1)).max(seq);
            a.outbound_progress(SPI, seq, seq * 100, seq);
            carry(&mut a, &mut b, *fab, &mut held_ab, now, t % 7 == 0);
            carry(&mut b, &mut a, *fba, &mut held_ba, now, t % 7 == 0);
            let stored = b.standby().get(SPI, SaDir::Outbound).map_or(0, |s| s.value);
            prop_assert!(a.limit(SPI).unwrap() <= stored, "limit {} > stored {}", a.limit(SPI).unwrap(), stored);
            prop_assert!(seq < a.limit(SPI).unwrap().max(1) || seq == 0);
        }
        // A clean link: the lease catches up with the sequence number.
        let end = fates.len() as u64 + 100;
        a.outbound_progress(SPI, seq, seq * 100, seq);
        for k in 0..10 { exchange(&mut a, &mut b, end + k * 60); }
        prop_assert!(a.limit(SPI).unwrap() > seq, "stalled for good: limit {} seq {}", a.limit(SPI).unwrap(), seq);
    }
}
