//! Leases and the link: nothing before the bulk sync, stalls and resumption,
//! coalesced bursts, forged and replayed frames, a dead link, liveness.

use super::*;

#[test]
fn nothing_is_sent_before_the_bulk_sync_then_the_lease_rules() {
    let (mut a, mut b) = pair();
    assert_eq!(
        a.limit(SPI),
        Some(0),
        "unsynchronised: no sequence number at all"
    );
    exchange(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    assert_eq!(
        b.standby().get(SPI, Direction::Outbound).unwrap().value,
        400
    );
    assert_eq!(a.limit(SPI), Some(400));
    assert!(events(&mut a).contains(&MirrorEvent::LimitRaised {
        spi: SPI,
        dir: Direction::Outbound,
        limit: 400
    }));
    assert_eq!(a.limit(SPI + 1), None, "B's SA");
    assert_eq!(b.limit(SPI + 1), Some(400));
}

#[test]
fn stall_while_acks_are_lost_then_resume() {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    a.outbound_progress(SPI, 399, 39_900, 399);
    for t in 1..20 {
        while let Some(f) = a.poll_transmit(t) {
            b.handle_frame(t, &f).unwrap();
        }
        while b.poll_transmit(t).is_some() {}
    }
    assert_eq!(a.limit(SPI), Some(400), "stalled at the acknowledged lease");
    assert!(b.standby().get(SPI, Direction::Outbound).unwrap().value >= 799);
    // The link heals: the next refresh re-sends the unacknowledged lease.
    exchange(&mut a, &mut b, 100);
    assert_eq!(a.limit(SPI), Some(799));
}

#[test]
fn a_burst_over_several_multiples_sends_one_state() {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    let before = a.stats().states_sent;
    a.outbound_progress(SPI, 350, 0, 350);
    exchange(&mut a, &mut b, 1);
    assert_eq!(a.stats().states_sent, before + 1);
    assert_eq!(
        b.standby().get(SPI, Direction::Outbound).unwrap().value,
        750
    );
}

#[test]
fn forged_replayed_and_stale_frames_change_nothing() {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    a.outbound_progress(SPI, 250, 0, 250);
    let f1 = a.poll_transmit(1).unwrap();
    let stored = b.standby().clone();
    let mut forged = f1.clone();
    let n = forged.len();
    forged[n / 2] ^= 0x40;
    assert_eq!(b.handle_frame(1, &forged), Err(Reject::Forged));
    let old_epoch = node(A, 999, 0, 0).poll_transmit(0).unwrap();
    assert_eq!(b.handle_frame(1, &old_epoch), Err(Reject::Stale));
    assert_eq!(b.standby(), &stored, "no refused frame touched the table");
    b.handle_frame(1, &f1).unwrap();
    assert_eq!(b.handle_frame(1, &f1), Err(Reject::Replayed));
    assert_eq!(
        b.standby().get(SPI, Direction::Outbound).unwrap().value,
        650
    );
    assert_eq!(b.rejected().total(), 3);
}

#[test]
fn a_dead_link_never_grows_the_queue() {
    let mut a = Mirror::new(cfg(A, B, 0), key(), 1, 0);
    for spi in 0..100 {
        a.add_sa(0x1000 + spi, Direction::Outbound, true, A);
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
    events(&mut a);
    a.handle_timeout(30);
    assert!(
        a.peer_alive(),
        "three heartbeats of 10 ms are not yet missed at 30 ms"
    );
    a.handle_timeout(31);
    assert!(!a.peer_alive());
    assert_eq!(
        events(&mut a),
        vec![MirrorEvent::PeerDead],
        "a survivor's inbound SAs keep their lease (only a fence lifts it)"
    );
    let hb = b.poll_transmit(40).unwrap();
    a.handle_frame(40, &hb).unwrap();
    assert!(a.peer_alive());
    assert!(a.poll_timeout() <= 40 + 31);
}
