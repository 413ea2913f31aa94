//! SAs added and removed while the pair runs, per-SA settings, fences,
//! and a bulk sync of 100 000 SAs.

use super::*;

#[test]
fn an_sa_added_while_the_pair_runs_is_leased_after_the_peer_answers_and_a_removed_one_leaves_its_history()
 {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    events(&mut a);
    // The host adds a new SA (home A) to both nodes while they run.
    const NEW: u32 = 0x3000;
    a.add_sa(NEW, Direction::Outbound, false, A);
    b.add_sa(NEW, Direction::Outbound, false, A);
    assert!(a.owns(NEW, Direction::Outbound) && !b.owns(NEW, Direction::Outbound));
    // It waits for B to say whether it knows the SA (B does not: it runs
    // from 1) and, with no takeover jump for 32-bit SAs here and so no
    // slack, for its first lease to be acknowledged.
    assert_eq!(a.limit(NEW), Some(0));
    exchange(&mut a, &mut b, 1);
    assert_eq!(a.limit(NEW), Some(400));
    assert!(events(&mut a).contains(&MirrorEvent::LimitRaised {
        spi: NEW,
        dir: Direction::Outbound,
        limit: 400
    }));
    a.outbound_progress(NEW, 150, 15_000, 150);
    exchange(&mut a, &mut b, 2);
    assert_eq!(
        b.standby().get(NEW, Direction::Outbound).unwrap().value,
        550
    );
    let view = |m: &Mirror| m.views().into_iter().find(|v| v.spi == NEW).unwrap();
    let (va, vb) = (view(&a), view(&b));
    assert_eq!((va.home, va.owner, vb.home, vb.owner), (A, A, A, A));
    assert_eq!(
        (va.acked, vb.stored, vb.acked),
        (Some(550), Some(550), None)
    );
    assert!(a.limit(NEW) >= Some(550));
    // Removed from A first: B's records of it are ignored and nothing of it
    // is sent again; how far it went stays on both as its history, so the
    // same SA added again starts past it.
    assert!(a.remove_sa(NEW, Direction::Outbound));
    assert!(!a.remove_sa(NEW, Direction::Outbound));
    assert_eq!(a.limit(NEW), None);
    assert!(b.remove_sa(NEW, Direction::Outbound));
    exchange(&mut a, &mut b, 60);
    for m in [&a, &b] {
        assert!(m.views().iter().all(|v| v.spi != NEW));
        assert!(m.standby().get(NEW, Direction::Outbound).unwrap().value >= 550);
    }
    // The others go on: A's SA is still leased by B.
    a.outbound_progress(SPI, 250, 25_000, 250);
    exchange(&mut a, &mut b, 120);
    assert_eq!(
        b.standby().get(SPI, Direction::Outbound).unwrap().value,
        650
    );
}

#[test]
fn an_sa_of_the_dead_peer_added_during_its_takeover_runs_here_then_goes_home() {
    let (mut a, mut b) = (node(A, 1, 1000, 0), node(B, 2, 1000, 0));
    exchange(&mut a, &mut b, 0);
    // A falls silent; B declares it dead and takes its SAs over.
    b.handle_timeout(100);
    assert!(!b.peer_alive());
    assert_eq!(b.take_over(), 2);
    events(&mut b);
    // The host rekeys one of A's SAs on B alone (A is down): the new SA runs
    // on B at once, two jumps past nothing stored (A may be alive behind a
    // cut link and run it from 1 within its slack, or have taken it over
    // from a value B reported).
    const NEW: u32 = 0x3000;
    b.add_sa(NEW, Direction::Outbound, false, A);
    assert!(b.owns(NEW, Direction::Outbound));
    assert_eq!(starts(&mut b, NEW), vec![2000]);
    assert!(b.limit(NEW).is_some_and(|l| l > 1), "it may send at once");
    b.outbound_progress(NEW, 700, 70_000, 700);
    // A comes back with its memory gone and the new SA in its
    // configuration; it syncs, and B hands everything back, the new SA
    // included: A starts it past all B could have used.
    let mut a2 = node(A, 5, 1000, 200);
    a2.add_sa(NEW, Direction::Outbound, false, A);
    exchange(&mut a2, &mut b, 200);
    assert!(a2.synced());
    events(&mut a2);
    let b_reach = b.limit(NEW).unwrap();
    assert_eq!(b.hand_back(), 3);
    exchange(&mut a2, &mut b, 210);
    let start = *starts(&mut a2, NEW)
        .last()
        .expect("A runs the new SA again");
    assert!(
        start >= b_reach,
        "A starts at {start}, B could reach {b_reach}"
    );
    assert!(a2.owns(NEW, Direction::Outbound) && !b.owns(NEW, Direction::Outbound));
}

#[test]
fn an_sa_may_have_its_own_interval_and_quantity() {
    let mut a = Mirror::new(cfg(A, B, 0), key(), 1, 0);
    let mut b = Mirror::new(cfg(B, A, 0), key(), 2, 0);
    let own = SaOverrides {
        interval: Some(10),
        quantity: Some(50),
    };
    for m in [&mut a, &mut b] {
        m.add_sa_with(0x7000, Direction::Outbound, false, A, own);
        m.add_sa(0x7001, Direction::Outbound, false, A);
        m.add_sa_with(0x7002, Direction::Inbound, false, A, own);
    }
    assert_eq!(a.interval_of(0x7000, Direction::Outbound), 10);
    assert_eq!(a.interval_of(0x7001, Direction::Outbound), 100);
    assert_eq!(a.interval_of(0x7002, Direction::Inbound), 10);
    exchange(&mut a, &mut b, 0);
    // The first packet of a run is due at once, whatever the interval.
    a.outbound_progress(0x7001, 1, 0, 1);
    exchange(&mut a, &mut b, 0);
    let base = |m: &Mirror, spi| m.standby().get(spi, Direction::Outbound).unwrap().value;
    let (b0, b1) = (base(&b, 0x7000), base(&b, 0x7001));
    // 12 packets cross a multiple of 10 but not of 100.
    let seq0 = a.limit(0x7000).unwrap().min(b0) - 1;
    a.outbound_progress(0x7000, seq0 + 12, 0, 12);
    a.outbound_progress(0x7001, 12, 0, 12);
    exchange(&mut a, &mut b, 1);
    assert_eq!(
        base(&b, 0x7000),
        seq0 + 12 + 50,
        "lease = seq + its own quantity"
    );
    assert_eq!(base(&b, 0x7001), b1, "not due yet at the default interval");
}

#[test]
fn a_fence_lifts_the_leases_until_the_peer_is_heard_again() {
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    assert_eq!(a.limit(SPI), Some(400));
    // B dies; the host fences it and tells A to run without leases.
    a.handle_timeout(100);
    assert_eq!(a.force_unleased(), Ok(()));
    assert_eq!(a.limit(SPI), Some(u64::MAX));
    assert!(events(&mut a).contains(&MirrorEvent::LimitRaised {
        spi: SPI,
        dir: Direction::Outbound,
        limit: u64::MAX
    }));
    a.outbound_progress(SPI, 5000, 0, 5000);
    // B comes back: the leases return, and A goes on once B stores how
    // far A went.
    let mut b2 = node(B, 5000, 0, 10);
    let mut t = 10;
    while let Some(f) = b2.poll_transmit(t) {
        a.handle_frame(t, &f).unwrap();
    }
    assert!(a.limit(SPI).unwrap() <= 5000, "leased again");
    for _ in 0..5 {
        t += 60;
        exchange(&mut a, &mut b2, t);
    }
    assert!(
        a.limit(SPI).unwrap() > 5000,
        "acknowledged past where it went"
    );
}

#[test]
fn bulk_sync_of_100_000_sas() {
    let n = 100_000u32;
    let mut a = Mirror::new(cfg(A, B, 0), key(), 1, 0);
    let mut b = Mirror::new(cfg(B, A, 0), key(), 2, 0);
    for spi in 0..n {
        a.add_sa(0x10000 + spi, Direction::Outbound, true, A);
        b.add_sa(0x10000 + spi, Direction::Outbound, true, A);
    }
    let mut frames = 0;
    for t in 0..20 {
        while let Some(f) = a.poll_transmit(t) {
            b.handle_frame(t, &f).unwrap();
            frames += 1;
        }
        while let Some(f) = b.poll_transmit(t) {
            a.handle_frame(t, &f).unwrap();
        }
    }
    assert_eq!(b.standby().len(), n as usize);
    assert!(a.synced() && b.synced());
    assert!(frames >= n as usize / 40, "{frames} frames");
}
